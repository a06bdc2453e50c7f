"""pwavenet: Parallel WaveNet — a WaveNet teacher, an IAF student distilled from it, and parallel
synthesis.

Importing the package is cheap: submodules (``pwavenet.config``, ``pwavenet.audio``,
``pwavenet.data``, ``pwavenet.models``, ...) and the loaders below are imported on first
use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_student", "load_teacher"]


def __getattr__(name: str) -> Any:
    if name in ("load_teacher", "load_student"):  # exports, no training code needed
        from .models import export

        return getattr(export, name)
    raise AttributeError(f"module 'pwavenet' has no attribute {name!r}")
