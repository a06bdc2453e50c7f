"""Subcommands that make data: ``make-corpus``, ``preprocess`` and ``convert-mel``."""

from __future__ import annotations

import argparse
import sys
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
            "\n\n"
            "With --mels DIR the log-mels are not computed but read from DIR/<id>.npy (an "
            "acoustic model's ground-truth-aligned mels, to fine-tune the vocoder on them; <id> "
            "is the utterance id: its metadata.csv name in an LJSpeech layout): float "
            "(n_mels, frames) arrays of the mel contract (`pwavenet synthesize --help`; "
            "`pwavenet convert-mel` converts other conventions), T // hop frames for T samples "
            "give or take 2, the longer side cut to the shorter. Pitch rows (audio.pitch) still "
            "come from the audio. A missing or unreadable file, other mel bands, non-finite "
            "values, more frames apart, or values that cannot be a natural-log magnitude mel "
            "are refused in one line naming the file, before anything is written. docs/mel.md "
            "walks through fine-tuning."
        ),
    )
    p.add_argument("corpus", type=Path, help="Corpus folder.")
    p.add_argument("out", type=Path, help="Feature cache folder to write (e.g. dump/).")
    p.add_argument(
        "--strict", action="store_true", help="Stop with an error at the first unusable file."
    )
    p.add_argument(
        "--mels",
        type=Path,
        metavar="DIR",
        help="Folder of <id>.npy mels to cache instead of computing them from the audio.",
    )
    p.add_argument(
        "--no-mel-range-check",
        action="store_true",
        help="With --mels: keep mels whose values cannot be a natural-log magnitude mel "
        "(warn instead of refusing).",
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
        mels=args.mels,
        check_mel_range=not args.no_mel_range_check,
        progress=progress_bar("preprocess"),
        on_skip=lambda path, cause: echo(f"skipped {path}: {cause}"),
    )
    if report.mel_warnings:
        more = len(report.mel_warnings) - 1
        tail = f" (and {more} more mels)" if more else ""
        print(f"pwavenet: warning: {report.mel_warnings[0]}{tail}", file=sys.stderr)
    cache = FeatureCache(args.out)
    counts = " / ".join(f"{s} {len(cache.entries(s))}" for s in ("train", "valid", "test"))
    mels = ""
    if args.mels is not None:
        mels = f"; mels from {args.mels} ({report.mel_aligned} cut to agree with their audio)"
    print(
        f"preprocess: kept {report.processed} files ({report.converted} converted, "
        f"{report.seconds:.1f} s of audio), skipped {len(report.skipped)}; "
        f"split {counts}{mels}; wrote {args.out}"
    )
    return 0


# --------------------------------------------------------------------------- convert-mel


CONVERT_MEL_DESCRIPTION = (
    "Convert .npy mels of another front end (HiFi-GAN, Tacotron 2, FastSpeech 2, "
    "ESPnet, ...) to the mel contract of `pwavenet synthesize --help` at the target's "
    "settings (--export or --config; default: the default config): undo a per-band "
    "normalisation (x * std + mean, in the source's own scale), change the log scale "
    "to natural log (log10: x ln 10; log2: x ln 2; db: 20 log10 of a magnitude mel, or "
    "with --power 10 log10 of a power mel), turn a power mel into a magnitude one "
    "(--power: ln M = (ln P + ln w_m) / 2, w_m the sum of band m's filter weights; exact "
    "for a spectrum flat across each band, an upper bound otherwise), align centred "
    "frames (--centered: 1 + T // hop frames; the last is dropped, leaving T // hop, "
    "each half a hop earlier than pwavenet's), and clamp at ln(log_floor)."
    "\n\n"
    "What cannot be converted is refused in one line: another number of mel bands, a "
    "pitch-informed target, or a sample rate, hop, fmin or fmax of the source (when "
    "given) that differs from the target's. Every input is checked before anything is "
    "written; outputs are OUT/<name>.npy, (n_mels, frames) float32, written atomically. "
    "docs/mel.md compares the front ends and says which flags each needs."
)


def _add_convert_mel(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "convert-mel",
        help="Convert a text-to-speech front end's .npy mels to pwavenet's convention.",
        description=CONVERT_MEL_DESCRIPTION,
    )
    p.add_argument("inputs", nargs="+", help="Input .npy mels, folders of them, or @list.txt.")
    p.add_argument("--out", type=Path, required=True, help="Folder for the converted mels.")
    p.add_argument(
        "--from",
        dest="log",
        choices=("natural", "log10", "log2", "db"),
        required=True,
        help="The log scale of the input values.",
    )
    p.add_argument(
        "--mean", type=Path, help="Per-band mean (n_mels,) .npy the mels were normalised with."
    )
    p.add_argument(
        "--std", type=Path, help="Per-band std (n_mels,) .npy the mels were normalised with."
    )
    p.add_argument("--power", action="store_true", help="The mel is of the power |X|^2.")
    p.add_argument(
        "--centered", action="store_true", help="Centred frames (center=True): drop the last."
    )
    p.add_argument(
        "--frames-first",
        action="store_true",
        help="Inputs are stored (frames, n_mels), as ESPnet and FastSpeech 2 write them.",
    )
    target = p.add_mutually_exclusive_group()
    target.add_argument("--export", type=Path, help="Target model's export folder.")
    target.add_argument("--config", type=Path, help="Target YAML config.")
    for flag, kind in (("--sample-rate", int), ("--hop-length", int)):
        p.add_argument(
            flag,
            type=kind,
            help=f"The source's {flag[2:].replace('-', ' ')}; refused if it differs.",
        )
    for flag in ("--fmin", "--fmax"):
        p.add_argument(
            flag, type=float, help=f"The source's {flag[2:]} in Hz; refused if it differs."
        )
    return _run_convert_mel


def _run_convert_mel(args: argparse.Namespace) -> int:
    from ..mels import MelSource, collect_mels, convert_files, load_stats, target_audio

    source = MelSource(
        log=args.log,
        mean=load_stats(args.mean, "--mean"),
        std=load_stats(args.std, "--std"),
        power=args.power,
        centered=args.centered,
        frames_first=args.frames_first,
        sample_rate=args.sample_rate,
        hop_length=args.hop_length,
        fmin=args.fmin,
        fmax=args.fmax,
    )
    written = convert_files(
        collect_mels(args.inputs), args.out, source, target_audio(args.export, args.config)
    )
    print(f"convert-mel: wrote {len(written)} mels ({args.log} -> natural log) to {args.out}")
    return 0


COMMANDS = (
    _add_make_corpus,
    _add_preprocess,
    _add_convert_mel,
)
