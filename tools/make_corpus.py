#!/usr/bin/env python
"""Write the synthetic speech-like corpus: the same as ``pwavenet make-corpus``.

Usage: ``python tools/make_corpus.py OUT [--utterances N] [--seed S] [--sample-rate SR]
[--min-seconds A] [--max-seconds B] [--engine synthetic|espeak] [--speakers N]``
(``--help`` for details).
The generator itself lives in :mod:`pwavenet.data.make_corpus`; this script exists so the corpus
can be made from a checkout with one obvious command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pwavenet.cli import main as pwavenet_main


def main(argv: Sequence[str] | None = None) -> int:
    return pwavenet_main(["make-corpus", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
