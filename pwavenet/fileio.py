"""Atomic file writing: nothing half-written is ever left under a final name."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import PwavenetError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    The temporary name keeps the suffix of ``path`` (so writers that infer a format from it work)
    and starts with a dot, so globbing for results never sees it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return Path(path)


def read_json(path: str | Path, fmt: str, error: type[PwavenetError], what: str) -> dict[str, Any]:
    """Read a JSON object whose ``"format"`` is ``fmt``; anything else raises ``error`` with a
    one-line message naming the file (``what`` says what the file should have been)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: unreadable {what} ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise error(f"{path}: not a pwavenet {what}")
    return data
