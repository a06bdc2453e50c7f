"""``synthesize``: WAV files from mels or audio with a student or teacher export; ``export-onnx``:
a student export as an ONNX graph for other runtimes."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from .common import Handler, progress_bar

# What a model's ``progress=`` hook counts: the student's chunks, the teacher's samples.
PROGRESS_UNIT = {"student": "chunk", "teacher": "sample"}


SYNTHESIZE_HELP = (
    "Synthesize a WAV for every input: audio files (their mel is computed with the "
    "model's feature settings, F0 included for a pitch-informed model) or .npy mel arrays "
    "(n_mels, frames; n_mels + 2 with log-F0 and voicing rows for a model trained with "
    "audio.pitch); files, folders, or "
    "@list.txt. A student export synthesizes in one parallel pass (in chunks for long "
    "inputs); a teacher export samples autoregressively with its cached generator. A "
    ".npy mel whose values cannot be a natural-log magnitude mel (a log10, dB or "
    "normalised one) gets a warning on stderr and is synthesized as it is."
)


def _add_synthesize(sub: argparse._SubParsersAction) -> Handler:
    from ..config import AudioConfig
    from ..mels import mel_contract

    p = sub.add_parser(
        "synthesize",
        aliases=["generate"],
        help="Synthesize audio from mels or audio files with a student or a teacher.",
        description=SYNTHESIZE_HELP + "\n\n" + STREAM_HELP,
        epilog=mel_contract(AudioConfig())
        + " These are the defaults; a model's export records its own settings.",
    )
    p.add_argument("model_dir", type=Path, help="Export folder of the model (run/export).")
    p.add_argument("inputs", nargs="+", help="Files, folders or @list.txt (--stream: above).")
    p.add_argument("--out", type=Path, required=True, help="Folder for the WAVs (--stream: above).")
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
        "--dtype",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="Precision of the student's flows: auto (bfloat16 where the device has bf16 matrix "
        "units, AMX or AVX512-BF16 on a CPU; float32 elsewhere), float32 or bfloat16. The "
        "teacher generates in float32. The line 'precision: ...' says which path ran.",
    )
    p.add_argument(
        "--resample",
        action="store_true",
        help="Resample audio inputs of another sample rate (by default they are an error).",
    )
    _add_stream_options(p)
    return _run_synthesize


def _run_synthesize(args: argparse.Namespace) -> int:
    if args.stream:
        return _run_stream(args)
    from ..eval.scores import synthesis_speed
    from ..models.export import load_vocoder
    from ..models.precision import precision_for
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
    precision = precision_for(args.dtype, model, args.device)
    print(f"precision: {precision.name} ({precision.reason})")
    rows = synthesize(
        model,
        utterances,
        args.out,
        batch_size=args.batch_size,
        seed=args.seed,
        chunk_samples=chunk,
        speaker=args.speaker,
        temperature=args.temperature,
        dtype=args.dtype,
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


STREAM_HELP = (
    "Streaming (--stream, student exports): one input, - for stdin or a file, holding .npy "
    "arrays one after another (np.save to the same file object, repeatedly; pickled object "
    "arrays are refused), each (rows, frames) float, rows as above, frames in time order. "
    "Audio is written as the frames arrive: 16-bit little-endian mono PCM at the model's "
    "sample rate to --out - (stdout, raw) or to a raw file, or a .wav file (written when the "
    "input ends). A frame's audio comes out once the upsampler's lookahead (2 frames by "
    "default) has arrived; the end of the input releases the rest. The stream equals "
    "synthesizing the whole mel of a file of the same name (stdin counts as 'stdin') with the "
    "same --seed and --dtype; --chunk-frames cuts the arrays into pieces of that many frames. "
    "Example: tts | pwavenet synthesize run/export - --stream --out - | aplay -f S16_LE -r "
    "22050 -c 1 (docs/serving.md)."
)


def _add_stream_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--stream",
        action="store_true",
        help="Synthesize one input of .npy mel arrays as they arrive (see Streaming above).",
    )
    p.add_argument(
        "--chunk-frames",
        type=int,
        default=0,
        help="--stream: push the mel this many frames at a time (0: each array as it comes).",
    )


def _run_stream(args: argparse.Namespace) -> int:
    """``synthesize --stream``: one input of .npy arrays to PCM or WAV, chunk by chunk."""
    import time

    import torch

    from ..errors import ConfigError
    from ..models.export import load_vocoder
    from ..models.precision import precision_for
    from ..models.streaming import StudentStream
    from ..pipe import audio_sink, mel_chunks, read_arrays
    from ..synthesis import utterance_seed

    if len(args.inputs) != 1 or args.model == "teacher" or args.chunk_frames < 0:
        raise ConfigError(
            "--stream takes one student export and one input (- for stdin, or a file of .npy "
            "arrays), and --chunk-frames of 0 or more"
        )
    model = load_vocoder(args.model_dir, args.device, kind="student")
    precision = precision_for(args.dtype, model, args.device)
    where = sys.stderr if str(args.out) == "-" else sys.stdout  # stdout may carry the audio
    print(f"precision: {precision.name} ({precision.reason})", file=where)
    source = args.inputs[0]
    name = "stdin" if source == "-" else Path(source).stem
    stream = StudentStream(
        model,
        speaker=model.speaker_ids(args.speaker, 1),
        generator=torch.Generator().manual_seed(utterance_seed(args.seed, name)),
        temperature=args.temperature,
        dtype=precision.dtype,
    )
    warn = lambda line: print(f"pwavenet: warning: {line}", file=sys.stderr)  # noqa: E731
    rate, busy = model.audio.sample_rate, 0.0
    with _binary_input(source) as fp, audio_sink(args.out, rate) as write:
        for mel in mel_chunks(read_arrays(fp, name), model.audio, args.chunk_frames, warn):
            start = time.perf_counter()
            audio = stream.push(torch.from_numpy(mel)).cpu().numpy()
            busy += time.perf_counter() - start
            write(_finite(audio, name))
        start = time.perf_counter()
        audio = stream.flush().cpu().numpy()
        busy += time.perf_counter() - start
        write(_finite(audio, name))
    seconds = stream.samples_out / rate
    print(
        f"synthesize --stream: {stream.frames_in} frames, {seconds:.2f} s of audio to "
        f"{args.out}; real-time factor {busy / max(seconds, 1e-9):.3f} (model time)",
        file=where,
    )
    return 0


def _finite(audio, name: str):
    """``audio`` (numpy), or a one-line error when the model produced non-finite samples."""
    import numpy as np

    from ..errors import DataError

    if not np.isfinite(audio).all():
        raise DataError(f"{name}: the model produced non-finite samples")
    return audio


@contextlib.contextmanager
def _binary_input(source: str):
    """stdin's bytes for ``-``, else the file opened for reading (one-line error if missing)."""
    from ..errors import DataError

    if source == "-":
        yield sys.stdin.buffer
        return
    try:
        fp = open(source, "rb")
    except OSError as exc:
        raise DataError(f"{source}: cannot read ({exc.strerror or exc})") from None
    with fp:
        yield fp


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
