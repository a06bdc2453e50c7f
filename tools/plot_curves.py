#!/usr/bin/env python
"""Plot the training curves of one or more runs into a PNG.

Usage: ``python tools/plot_curves.py RUN... --out curves.png [--keys nll/bits,kl/loss]``. A RUN
is a run folder (holding ``log.jsonl``), optionally labelled as ``LABEL=RUN``. One panel per
metric, training and validation (``valid/``) series on the same axes; the default keys are every
logged metric but ``lr`` and ``grad/norm``. Errors are one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pwavenet.errors import PwavenetError
from pwavenet.eval.curves import plot_curves


def _runs(items: Sequence[str]) -> dict[str, Path]:
    """``{label: folder}`` from ``RUN`` or ``LABEL=RUN`` items (the label defaults to RUN)."""
    runs: dict[str, Path] = {}
    for item in items:
        label, sep, folder = item.partition("=")
        if not sep:
            label, folder = item, item
        runs[label] = Path(folder)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="plot_curves.py", description="Plot the training curves of pwavenet runs."
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="Run folders (or LABEL=RUN).")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write.")
    parser.add_argument(
        "--keys",
        help="Comma-separated metrics to plot, e.g. nll/bits,kl/loss (default: all "
        "but lr and grad/norm).",
    )
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.keys.split(",") if k.strip()] if args.keys else None
    try:
        out = plot_curves(_runs(args.runs), args.out, keys)
    except PwavenetError as exc:
        print(f"plot_curves: error: {exc}", file=sys.stderr)
        return 1
    print(f"plot_curves: wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
