"""Subcommands that make data: ``make-corpus`` and ``preprocess``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import Handler, add_config_args, echo, progress_bar

# --------------------------------------------------------------------------- make-corpus


def _add_make_corpus(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "make-corpus",
        help="Write a synthetic speech-like corpus in the LJSpeech layout.",
        description=(
            "Write a deterministic, seeded speech-like corpus (source-filter synthesis: voiced "
            "segments with F0 contours and formants, noise bursts, pauses) as 16-bit WAV files "
            "with a metadata.csv in the LJSpeech layout. No outside data is needed."
        ),
    )
    p.add_argument("out", type=Path, help="Folder to write the corpus into.")
    p.add_argument("--utterances", type=int, default=100, help="Number of utterances to write.")
    p.add_argument("--seed", type=int, default=0, help="Seed; the same seed gives the same files.")
    p.add_argument("--sample-rate", type=int, default=22050, help="Sample rate in Hz.")
    p.add_argument("--min-seconds", type=float, default=1.0, help="Shortest utterance in seconds.")
    p.add_argument("--max-seconds", type=float, default=4.0, help="Longest utterance in seconds.")
    p.add_argument(
        "--engine",
        choices=("synthetic", "espeak"),
        default="synthetic",
        help="Use the built-in synthesizer, or espeak-ng (when installed) to speak random "
        "sentences.",
    )
    p.add_argument(
        "--speakers",
        type=int,
        default=0,
        help="Make a multi-speaker corpus: utterance i is spoken by speaker i %% N, named in a "
        "4th metadata.csv field (default 0: every utterance has a voice of its own).",
    )
    return _run_make_corpus


def _run_make_corpus(args: argparse.Namespace) -> int:
    import soundfile as sf

    from ..data.make_corpus import make_corpus

    out = make_corpus(
        args.out,
        num_utterances=args.utterances,
        seed=args.seed,
        sample_rate=args.sample_rate,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        engine=args.engine,
        speakers=args.speakers,
        progress=progress_bar("make-corpus", "utt"),
    )
    wavs = sorted((out / "wavs").glob("*.wav"))
    seconds = sum(sf.info(str(w)).duration for w in wavs)
    print(f"make-corpus: wrote {len(wavs)} utterances ({seconds:.1f} s of audio) to {out}")
    return 0


# --------------------------------------------------------------------------- preprocess


def _add_preprocess(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "preprocess",
        help="Extract log-mel features of a corpus into a feature cache.",
        description=(
            "Index a corpus (an LJSpeech-style folder with metadata.csv and wavs/, or any folder "
            "of audio files), convert what can be converted (channels, sample rate, sample "
            "format), skip unusable files with one line each, split it into train/valid/test, "
            "and write audio + log-mel features with a manifest into OUT."
        ),
    )
    p.add_argument("corpus", type=Path, help="Corpus folder.")
    p.add_argument("out", type=Path, help="Feature cache folder to write (e.g. dump/).")
    p.add_argument(
        "--strict", action="store_true", help="Stop with an error at the first unusable file."
    )
    add_config_args(p)
    return _run_preprocess


def _run_preprocess(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..data.cache import FeatureCache
    from ..data.preprocess import preprocess_corpus

    cfg = load_config(args.config, args.overrides)
    report = preprocess_corpus(
        args.corpus,
        args.out,
        cfg.audio,
        cfg.data,
        config=cfg,
        strict=args.strict,
        progress=progress_bar("preprocess"),
        on_skip=lambda path, cause: echo(f"skipped {path}: {cause}"),
    )
    cache = FeatureCache(args.out)
    counts = " / ".join(f"{s} {len(cache.entries(s))}" for s in ("train", "valid", "test"))
    print(
        f"preprocess: kept {report.processed} files ({report.converted} converted, "
        f"{report.seconds:.1f} s of audio), skipped {len(report.skipped)}; "
        f"split {counts}; wrote {args.out}"
    )
    return 0


COMMANDS = (
    _add_make_corpus,
    _add_preprocess,
)
