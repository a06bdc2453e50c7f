"""pwavenet: Parallel WaveNet — a WaveNet teacher, an IAF student distilled from it, and parallel
synthesis.

Importing the package is cheap: submodules (``pwavenet.config``, ``pwavenet.audio``,
``pwavenet.data``, ``pwavenet.distributions``, ``pwavenet.corpus``) are imported on use.
"""

from __future__ import annotations

__version__ = "0.1.0"
