#!/usr/bin/env python
"""Describe trained models: kind, config, parameter counts, receptive field, teacher record.

Usage: ``python tools/inspect_export.py PATH... [--json]``, each PATH an export folder
(``RUN/export``) or a run folder (its export, or its newest checkpoint when training has not
finished). For a student, the teacher it was distilled from is checked against the recorded
sha256. Errors are one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pwavenet.errors import PwavenetError
from pwavenet.eval.inspection import describe, format_description


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="inspect_export.py",
        description="Describe pwavenet exports or run folders (kind, config, parameters, "
        "receptive field, teacher record).",
    )
    parser.add_argument("paths", nargs="+", type=Path, help="Export folders or run folders.")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of text.")
    args = parser.parse_args(argv)
    try:
        found = [describe(path) for path in args.paths]
    except PwavenetError as exc:
        print(f"inspect_export: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(found if len(found) > 1 else found[0], indent=2))
    else:
        print("\n".join(format_description(d) for d in found), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
