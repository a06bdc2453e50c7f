"""``python -m pwavenet`` is the ``pwavenet`` command."""

from .cli import main

raise SystemExit(main())
