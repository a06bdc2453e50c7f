"""``synthesize``: WAV files from mels or audio with a student or teacher export; ``export-onnx``:
a student export as an ONNX graph for other runtimes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import Handler, progress_bar

# What a model's ``progress=`` hook counts: the student's chunks, the teacher's samples.
PROGRESS_UNIT = {"student": "chunk", "teacher": "sample"}


def _add_synthesize(sub: argparse._SubParsersAction) -> Handler:
    from ..config import AudioConfig
    from ..mels import mel_contract

    p = sub.add_parser(
        "synthesize",
        aliases=["generate"],
        help="Synthesize audio from mels or audio files with a student or a teacher.",
        description=(
            "Synthesize a WAV for every input: audio files (their mel is computed with the "
            "model's feature settings, F0 included for a pitch-informed model) or .npy mel arrays "
            "(n_mels, frames; n_mels + 2 with log-F0 and voicing rows for a model trained with "
            "audio.pitch); files, folders, or "
            "@list.txt. A student export synthesizes in one parallel pass (in chunks for long "
            "inputs); a teacher export samples autoregressively with its cached generator. A "
            ".npy mel whose values cannot be a natural-log magnitude mel (a log10, dB or "
            "normalised one) gets a warning on stderr and is synthesized as it is."
        ),
        epilog=mel_contract(AudioConfig())
        + " These are the defaults; a model's export records its own settings.",
    )
    p.add_argument("model_dir", type=Path, help="Export folder of the model (run/export).")
    p.add_argument("inputs", nargs="+", help="Input files, folders or @list.txt.")
    p.add_argument("--out", type=Path, required=True, help="Folder for the WAV files.")
    p.add_argument(
        "--model",
        choices=("auto", "student", "teacher"),
        default="auto",
        help="Which model the export must be (auto: whichever it is).",
    )
    p.add_argument("--batch-size", type=int, default=1, help="Utterances synthesized together.")
    p.add_argument(
        "--chunk-seconds",
        type=float,
        default=5.0,
        help="Student: synthesize this many seconds at a time (same output, bounded memory); "
        "0 for one pass.",
    )
    p.add_argument("--seed", type=int, default=0, help="Sampling seed.")
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="Scale of the random part of each sample in voiced frames (everywhere for a "
        "mel-only model); below 1 sharpens voiced sounds (docs/pitch.md).",
    )
    p.add_argument(
        "--speaker",
        help="For a model trained on a corpus with speakers: the speaker's name in that corpus "
        "(or its id).",
    )
    p.add_argument("--device", default="cpu", help="Torch device, e.g. cpu or cuda.")
    p.add_argument(
        "--resample",
        action="store_true",
        help="Resample audio inputs of another sample rate (by default they are an error).",
    )
    return _run_synthesize


def _run_synthesize(args: argparse.Namespace) -> int:
    from ..eval.scores import synthesis_speed
    from ..models.export import load_vocoder
    from ..synthesis import collect_inputs, load_inputs, synthesize

    kind = None if args.model == "auto" else args.model
    model = load_vocoder(args.model_dir, args.device, kind=kind)
    utterances = load_inputs(
        collect_inputs(args.inputs),
        model.audio,
        resample=args.resample,
        on_warning=lambda line: print(f"pwavenet: warning: {line}", file=sys.stderr),
    )
    chunk = int(args.chunk_seconds * model.audio.sample_rate) or None
    rows = synthesize(
        model,
        utterances,
        args.out,
        batch_size=args.batch_size,
        seed=args.seed,
        chunk_samples=chunk,
        speaker=args.speaker,
        temperature=args.temperature,
        progress=progress_bar(f"synthesize ({model.kind})", PROGRESS_UNIT[model.kind]),
    )
    for r in rows:
        print(
            f"{r['id']}: {r['seconds']:.2f} s, {r['samples_per_s']:.0f} samples/s, "
            f"real-time factor {r['rtf']:.3f}"
        )
    speed = synthesis_speed(args.out)
    print(
        f"synthesize: {len(rows)} files ({speed['seconds']:.1f} s of audio) in {args.out}; "
        f"mean real-time factor {speed['rtf']:.3f}"
    )
    return 0


def _add_export_onnx(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "export-onnx",
        help="Write a student export as an ONNX graph (mel and base noise in, audio out).",
        description=(
            "Write a student export as an ONNX graph: inputs mel (B, n_mels [+ 2 pitch rows], F) "
            "and the base noise z (B, F * hop), output audio (B, F * hop), batch and frames "
            "dynamic; the convolution layout of training, traced by torch's exporter. Needs the "
            "onnx extra (pip install 'pwavenet[onnx]'). Students with a sine excitation, speakers "
            "or pre-emphasis are refused; so is anything but a student export, and nothing is "
            "written then."
        ),
    )
    p.add_argument("model_dir", type=Path, help="Export folder of the student (run/export).")
    p.add_argument("out", type=Path, help="The .onnx file to write (replaced atomically).")
    return _run_export_onnx


def _run_export_onnx(args: argparse.Namespace) -> int:
    from ..models.onnx_export import export_student_onnx

    path = export_student_onnx(args.model_dir, args.out)
    print(f"export-onnx: {args.model_dir} -> {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


COMMANDS = (_add_synthesize, _add_export_onnx)
