#!/usr/bin/env python
"""Write a speech-like corpus in the LJSpeech layout: a thin layer over pwavenet.corpus.

Example: ``python tools/make_corpus.py data/synth --num-utterances 100 --seed 0``.
The same function is behind ``pwavenet make-corpus``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from pwavenet.corpus import ENGINES, METADATA, CorpusError, make_corpus


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="make_corpus",
        description=(
            "Write a seeded, speech-like corpus (wavs/<id>.wav as 16-bit PCM, metadata.csv in "
            "the LJSpeech layout, and ground_truth.json with the F0 of every utterance). The "
            "same seed always gives byte-identical files."
        ),
    )
    parser.add_argument(
        "out",
        type=Path,
        help="The folder to write; it must be empty, new, or "
        "a corpus written by this tool before (which is then replaced).",
    )
    parser.add_argument(
        "--num-utterances",
        type=int,
        default=100,
        help="How many utterances to write (default: 100).",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="The random seed; utterance i depends only on the seed and i.",
    )
    parser.add_argument(
        "--sample-rate",
        type=int,
        default=22050,
        help="The sample rate of the WAV files in Hz, at least 8000 (default: 22050).",
    )
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=1.0,
        help="The shortest utterance in seconds (default: 1.0).",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=4.0,
        help="The longest utterance in seconds (default: 4.0).",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="synthetic",
        help="'synthetic' uses the built-in source-filter synthesiser; 'espeak' "
        "speaks random sentences with the espeak-ng program, which must be "
        "installed (default: synthetic).",
    )
    return parser


def _summary(out: Path) -> tuple[int, float]:
    """Number of utterances listed in ``out/metadata.csv`` and their total duration in seconds."""
    ids = [line.split("|", 1)[0] for line in (out / METADATA).read_text("utf-8").splitlines()]
    return len(ids), sum(sf.info(str(out / "wavs" / f"{i}.wav")).duration for i in ids)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="make_corpus: %(levelname)s: %(message)s")
    try:
        out = make_corpus(
            args.out,
            num_utterances=args.num_utterances,
            seed=args.seed,
            sample_rate=args.sample_rate,
            min_seconds=args.min_seconds,
            max_seconds=args.max_seconds,
            engine=args.engine,
            progress=lambda items: tqdm(items, desc="make_corpus", unit="utt", disable=None),
        )
    except CorpusError as exc:
        print(f"make_corpus: error: {exc}", file=sys.stderr)
        return 1
    count, seconds = _summary(out)
    print(f"wrote {count} utterances ({seconds:.1f} s at {args.sample_rate} Hz) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
