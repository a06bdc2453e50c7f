#!/usr/bin/env python
"""Measure the models and print a Markdown table (performance claims come from here, never from
a timed test).

Example: ``python tools/benchmark.py --device cpu --configs tiny,practical --seconds 5``.
Every entry of ``BENCHMARKS`` is a function from :class:`Settings` to table rows (dicts from
column to value); the table shows the union of their columns, so the student's rows can be
added as one more function.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import importlib.util
import itertools
import math
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pwavenet.config import AudioConfig, DistillConfig
from pwavenet.models.precision import bf16_units, flows_mflop
from pwavenet.models.student import Student
from pwavenet.models.teacher import WaveNet
from pwavenet.train.distill import DistillTask

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_latency import stream_rows  # tools/stream_latency.py

# Teacher sizes: the mel settings (80 mels, hop 256) are the same; ``train`` is the batch of a
# training step, (clips, samples per clip).
TEACHERS: dict[str, dict] = {
    "tiny": {
        "model": dict(
            layers=6, cycles=2, residual_channels=32, gate_channels=64, skip_channels=32, mixtures=3
        ),
        "train": (4, 2048),
    },
    "practical": {
        "model": dict(
            layers=24,
            cycles=4,
            residual_channels=128,
            gate_channels=256,
            skip_channels=128,
            mixtures=10,
        ),
        "train": (4, 7680),
    },
}
COMMON = dict(n_mels=80, kernel_size=3, upsample_scales=(4, 4, 16))
NAIVE_STEPS = 512  # the naive sampler times at most this many steps
# Student sizes, each paired with the teacher it is compared with and distilled from; ``train``
# is the batch of a distillation step.
STUDENTS: dict[str, dict] = {
    "tiny": {
        "model": dict(
            flow_layers=[4, 4], layers_per_cycle=4, residual_channels=16, gate_channels=32
        ),
        "train": (2, 2048),
    },
    "practical": {  # the paper's student: 4 flows of 10, 10, 10, 30 layers, 64 channels
        "model": dict(
            flow_layers=[10, 10, 10, 30],
            layers_per_cycle=10,
            residual_channels=64,
            gate_channels=128,
        ),
        "train": (2, 7680),
    },
}
SAMPLE_RATE = 22050  # real-time factors are stated at this rate
SYNTH_SECONDS = 2.0  # utterance length of the synthesis speed measurements
CHUNK_SECONDS = 5.0  # chunk of the chunked long-utterance measurement (the CLI default)
STREAM_FRAMES = 8  # mel frames per push of the streaming rows (tools/stream_latency.py: others)


@dataclass
class Settings:
    device: torch.device
    configs: list[str]
    seconds: float  # time budget of each measurement
    long_seconds: float = 60.0  # length of the long-utterance memory measurement


# --------------------------------------------------------------------------- measuring


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], object], seconds: float, device: torch.device) -> float:
    """Seconds of the fastest of repeated calls of ``fn``, repeated until ``seconds`` have
    passed (at least twice, at most 50 times): the best run is the least disturbed one."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 2 or (time.perf_counter() - start < seconds and len(times) < 50):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


class PeakMemory:
    """Peak memory in MiB while the ``with`` block runs: on CUDA the allocator's peak
    (``torch.cuda.max_memory_allocated``), on the CPU the process's peak resident set size
    (``VmHWM``, reset first through ``/proc/self/clear_refs``)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.mib = device, math.nan

    @staticmethod
    def describe(device: torch.device) -> str:
        if device.type == "cuda":
            return "CUDA allocator peak (torch.cuda.max_memory_allocated)"
        return "process peak resident set size (VmHWM)"

    def __enter__(self) -> PeakMemory:
        gc.collect()
        try:  # glibc keeps freed memory resident; give it back so that the peak is this block's
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:  # not Linux: the peak since the process started
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.mib = int(line.split()[1]) / 1024
        except OSError:
            import resource

            self.mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --------------------------------------------------------------------------- the teacher


def autocast(s: Settings, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on the device (nothing for ``None``, i.e. float32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(s.device.type, dtype=dtype)


def train_rate(
    model: WaveNet, clips: int, length: int, s: Settings, dtype: torch.dtype | None = None
) -> tuple[float, float]:
    """Samples per second of a teacher-forced training step (forward, backward, Adam) on
    ``clips x length`` samples, and the peak memory in MiB; ``dtype`` bf16 autocasts the step
    (the loss maths stays float32)."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    audio = ((torch.rand(clips, 1, length, generator=g) * 2 - 1) * 0.5).to(s.device)
    mel = torch.randn(clips, model.n_mels, length // model.hop_length, generator=g).to(s.device)

    def step() -> None:
        with autocast(s, dtype):
            loss = -model.log_prob(audio, mel).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up: lazy initialisation and the optimizer state
    with PeakMemory(s.device) as mem:
        seconds = best_time(step, s.seconds, s.device)
    model.eval()
    return clips * length / seconds, mem.mib


def cached_rate(
    model: WaveNet, batch: int, s: Settings, engine: str = "auto", probe: int = 4
) -> tuple[float, float]:
    """Samples per second (all utterances together) of :meth:`WaveNet.generate` on ``batch``
    utterances with ``engine``, setup included, and the peak memory in MiB. A run of ``probe``
    frames (long enough that a CUDA graph's capture does not dominate) sizes the measured runs
    to about a third of the budget."""
    hop = model.hop_length

    def runner(frames: int) -> Callable[[], object]:
        g = torch.Generator().manual_seed(0)
        mel = torch.randn(batch, model.n_mels, frames, generator=g).to(s.device)
        seed = torch.Generator().manual_seed(1)
        return lambda: model.generate(mel, generator=seed, engine=engine)

    steps_per_second = probe * hop / best_time(runner(probe), 0.0, s.device)
    frames = max(1, round(steps_per_second * s.seconds / 3 / hop))
    run = runner(frames)
    with PeakMemory(s.device) as mem:
        seconds = best_time(run, s.seconds, s.device)
    return batch * frames * hop / seconds, mem.mib


def naive_rate(model: WaveNet, s: Settings) -> float:
    """Samples per second of :meth:`WaveNet.generate_naive` at batch 1 and full context: its
    loop starts at step ``receptive_field - 1`` (the history is silence, which costs the same
    as audio), one untimed step, then steps until the budget is spent."""
    skip = model.receptive_field - 1
    frames = math.ceil((skip + 1 + NAIVE_STEPS) / model.hop_length)
    mel = torch.randn(1, model.n_mels, frames, generator=torch.Generator().manual_seed(0))
    timed = {"steps": 0, "seconds": math.nan}

    def timer(steps: Iterable[int]) -> Iterator[int]:
        it = itertools.islice(steps, skip, skip + 1 + NAIVE_STEPS)
        yield next(it)  # warm-up
        sync(s.device)
        start = time.perf_counter()
        for t in it:
            yield t
            timed["steps"] += 1
            if timed["steps"] >= 2 and time.perf_counter() - start >= s.seconds:
                break
        sync(s.device)
        timed["seconds"] = time.perf_counter() - start

    model.generate_naive(mel.to(s.device), progress=timer)
    return timed["steps"] / timed["seconds"]


def teacher_rows(s: Settings) -> list[dict[str, object]]:
    rows = []
    for name in s.configs:
        torch.manual_seed(0)
        model = WaveNet(**COMMON, **TEACHERS[name]["model"]).to(s.device).eval()
        clips, length = TEACHERS[name]["train"]
        one, _ = cached_rate(model, 1, s)
        eight, gen_mib = cached_rate(model, 8, s)
        naive = naive_rate(model, s)
        train, train_mib = train_rate(model, clips, length, s)
        rows.append(
            {
                "model": f"teacher {name}",
                "params": sum(p.numel() for p in model.parameters()),
                "receptive field": model.receptive_field,
                "train batch": f"{clips} x {length}",
                "train (samples/s)": train,
                "train peak (MiB)": train_mib,
                "cached B=1 (samples/s)": one,
                "cached B=8 (samples/s, all 8)": eight,
                "naive B=1 (samples/s)": naive,
                "cached / naive": one / naive,
                "generate B=8 peak (MiB)": gen_mib,
            }
        )
        del model
        gc.collect()
    return rows


# --------------------------------------------------------------------------- the student


def flops_per_sample(model: torch.nn.Module) -> int:
    """Multiply-adds x 2 per output sample of every 1-D convolution in ``model``'s flows
    (the mel upsampler and elementwise work are not counted): :func:`flows_mflop`."""
    return round(1e6 * flows_mflop(model))


def matmul_peak(s: Settings, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of a 2048 x 2048 matrix product in ``dtype`` (best of repeated runs)."""
    a = torch.randn(2048, 2048, device=s.device, dtype=dtype)
    return 2 * 2048**3 / best_time(lambda: a @ a, min(s.seconds, 2.0), s.device) / 1e9


def synth_rate(
    model: Student,
    batch: int,
    seconds: float,
    s: Settings,
    chunk: int | None = None,
    dtype: torch.dtype = torch.float32,
):
    """Samples per second (all utterances) of :meth:`Student.synthesize` on ``batch``
    utterances of ``seconds`` each, noise included, and the peak memory in MiB; ``dtype`` is
    that of the flows' matrix products (``synthesize(dtype=)``: the upsampler and the
    composition stay float32, as ``pwavenet synthesize --dtype`` runs them)."""
    frames = max(1, round(seconds * SAMPLE_RATE / model.hop_length))
    g = torch.Generator().manual_seed(0)
    mel = torch.randn(batch, model.n_mels, frames, generator=g).to(s.device)

    def run() -> object:
        with torch.inference_mode():
            return model.synthesize(mel, generator=g, chunk_samples=chunk, dtype=dtype)

    with PeakMemory(s.device) as mem:
        took = best_time(run, s.seconds, s.device)
    return batch * frames * model.hop_length / took, mem.mib


def onnx_rate(model: Student, s: Settings) -> float | str:
    """Samples per second of the student's ONNX graph (``pwavenet export-onnx``: the
    convolution layout) in onnxruntime on the CPU at batch 1, noise drawn by torch included as
    in :func:`synth_rate`, with torch's thread count; "n/a" on CUDA or without onnxruntime."""
    if s.device.type != "cpu" or importlib.util.find_spec("onnxruntime") is None:
        return "n/a"
    from pwavenet.models.onnx_export import export_onnx, onnx_session

    frames = max(1, round(SYNTH_SECONDS * SAMPLE_RATE / model.hop_length))
    g = torch.Generator().manual_seed(0)
    mel = torch.randn(1, model.n_mels, frames, generator=g).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        session = onnx_session(
            export_onnx(model, Path(tmp) / "student.onnx"), torch.get_num_threads()
        )

    def run() -> object:
        z = model.noise([frames * model.hop_length], g).numpy()
        return session.run(None, {"mel": mel, "z": z})

    return frames * model.hop_length / best_time(run, s.seconds, s.device)


def distill_rate(
    student: Student,
    teacher: WaveNet,
    clips: int,
    length: int,
    s: Settings,
    dtype: torch.dtype | None = None,
) -> float:
    """Samples per second of a distillation step (student sample, frozen teacher pass, Monte
    Carlo KL with 16 draws, power loss, backward, Adam); ``dtype`` bf16 autocasts it."""
    task = DistillTask(teacher, DistillConfig(samples=16), AudioConfig())
    opt = torch.optim.Adam(student.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    batch = {
        "audio": ((torch.rand(clips, 1, length, generator=g) * 2 - 1) * 0.3).to(s.device),
        "mel": torch.randn(clips, 80, length // 256, generator=g).to(s.device),
        "lengths": torch.full((clips,), length, device=s.device),
    }

    def step() -> None:
        with autocast(s, dtype):
            loss, _ = task.loss(student, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    student.train()
    step()
    took = best_time(step, s.seconds, s.device)
    student.eval()
    return clips * length / took


def student_rows(s: Settings) -> list[dict[str, object]]:
    peak = matmul_peak(s)
    rows = []
    for name in s.configs:
        torch.manual_seed(0)
        model = Student(**COMMON, **STUDENTS[name]["model"]).to(s.device).eval()
        with torch.no_grad():  # the output layers start at zero: give the flows some work
            for flow in model.flows:
                torch.nn.init.normal_(flow.out.weight, std=0.01)
        teacher = WaveNet(**COMMON, **TEACHERS[name]["model"]).to(s.device).eval()
        one, _ = synth_rate(model, 1, SYNTH_SECONDS, s)
        eight, _ = synth_rate(model, 8, SYNTH_SECONDS, s)
        long = Settings(s.device, s.configs, 0.0, s.long_seconds)  # one timed run each
        _, whole_mib = synth_rate(model, 1, s.long_seconds, long)
        _, chunk_mib = synth_rate(
            model, 1, s.long_seconds, long, chunk=int(CHUNK_SECONDS * SAMPLE_RATE)
        )
        onnx_one = onnx_rate(model, s)
        teacher_one, _ = cached_rate(teacher, 1, s)
        clips, length = STUDENTS[name]["train"]
        train = distill_rate(model, teacher, clips, length, s)
        gflops = flops_per_sample(model) * one / 1e9
        rows.append(
            {
                "model": f"student {name} (teacher {name})",
                "params": sum(p.numel() for p in model.parameters()),
                "lookback": model.lookback,
                "MFLOP/sample": flops_per_sample(model) / 1e6,
                "B=1 (samples/s)": one,
                f"RTF at {SAMPLE_RATE / 1000:g} kHz": SAMPLE_RATE / one,
                "GFLOP/s (% of matmul peak)": f"{gflops:.0f} ({100 * gflops / peak:.0f} %)",
                "ONNX Runtime B=1 (samples/s)": onnx_one,
                "B=8 (samples/s, all 8)": eight,
                f"{s.long_seconds:g} s peak (MiB)": whole_mib,
                f"{s.long_seconds:g} s chunked peak (MiB)": chunk_mib,
                "distill train batch": f"{clips} x {length}",
                "distill (samples/s)": train,
                "teacher cached B=1 (samples/s)": teacher_one,
                "student / teacher": one / teacher_one,
            }
        )
        del model, teacher
        gc.collect()
    return rows


# --------------------------------------------------------------------------- the paths


def matvec_us(s: Settings, rows: int, cols: int, dtype: torch.dtype) -> float:
    """Microseconds of one ``(1, rows) @ (rows, cols)`` product in ``dtype``: numpy's for
    float32 on the CPU (what the teacher's generation step uses), torch's otherwise."""
    calls = 200
    if s.device.type == "cpu" and dtype == torch.float32:
        x, w = np.ones((1, rows), np.float32), np.ones((rows, cols), np.float32)
        out = np.empty((1, cols), np.float32)
        fn = lambda: [np.matmul(x, w, out=out) for _ in range(calls)]  # noqa: E731
    else:
        x = torch.ones(1, rows, device=s.device, dtype=dtype)
        w = torch.ones(rows, cols, device=s.device, dtype=dtype)
        fn = lambda: [x @ w for _ in range(calls)]  # noqa: E731
    return best_time(fn, min(s.seconds, 1.0), s.device) / calls * 1e6


def snr_db(reference: torch.Tensor, other: torch.Tensor) -> float:
    """SNR of ``other`` against ``reference`` in dB (in float64; inf when they are equal)."""
    error = (reference.double() - other.double()).pow(2).sum().item()
    return math.inf if error == 0 else 10 * math.log10(reference.double().pow(2).sum() / error)


def bf16_snr_db(model: Student, s: Settings) -> float:
    """SNR (dB) of the student's bf16 output against its float32 output, same noise, on a
    random mel of :data:`SYNTH_SECONDS`."""
    frames = max(1, round(SYNTH_SECONDS * SAMPLE_RATE / model.hop_length))
    g = torch.Generator().manual_seed(0)
    mel = torch.randn(1, model.n_mels, frames, generator=g).to(s.device)
    noise = model.noise([frames * model.hop_length], g, s.device)
    full = model.synthesize(mel, noise=noise)
    return snr_db(full, model.synthesize(mel, noise=noise, dtype=torch.bfloat16))


def path_rows(s: Settings) -> list[dict[str, object]]:
    """One row per inference path of each configuration at batch 1: the student in float32,
    bf16 and ONNX Runtime, and the teacher's cached generation (float32 only), with GFLOP/s
    against both matrix-product peaks."""
    peaks = {"float32": matmul_peak(s), "bfloat16": matmul_peak(s, torch.bfloat16)}
    units = bf16_units(s.device) or "none: emulated"
    rows = []

    def row(model: str, path: str, rate: float | str, flops: int, note: str = "") -> None:
        if isinstance(rate, str):
            rows.append({"model": model, "path": path, "B=1 (samples/s)": rate, "note": note})
            return
        gflops = flops * rate / 1e9
        rows.append(
            {
                "model": model,
                "path": path,
                "B=1 (samples/s)": rate,
                f"RTF at {SAMPLE_RATE / 1000:g} kHz": SAMPLE_RATE / rate,
                "GFLOP/s": gflops,
                "% of float32 peak": 100 * gflops / peaks["float32"],
                "% of bf16 peak": 100 * gflops / peaks["bfloat16"],
                "note": note,
            }
        )

    for name in s.configs:
        torch.manual_seed(0)
        student = Student(**COMMON, **STUDENTS[name]["model"]).to(s.device).eval()
        with torch.no_grad():  # the output layers start at zero: give the flows some work
            for flow in student.flows:
                torch.nn.init.normal_(flow.out.weight, std=0.01)
        flops, label = flops_per_sample(student), f"student {name}"
        row(label, "float32", synth_rate(student, 1, SYNTH_SECONDS, s)[0], flops)
        half = synth_rate(student, 1, SYNTH_SECONDS, s, dtype=torch.bfloat16)[0]
        snr = f"bf16 units: {units}; SNR vs float32 {bf16_snr_db(student, s):.1f} dB"
        row(label, "bfloat16 (flows)", half, flops, snr)
        for dtype in (torch.float32, torch.bfloat16):
            (stream,) = stream_rows(student, (STREAM_FRAMES,), SYNTH_SECONDS, 2, dtype)
            path = f"streaming {str(dtype).removeprefix('torch.')}, {STREAM_FRAMES}-frame chunks"
            first = f"first audio after {stream['first audio (ms)']:.0f} ms"
            row(label, path, stream["samples/s"], flops, first)
        row(label, "ONNX Runtime float32", onnx_rate(student, s), flops)
        teacher = WaveNet(**COMMON, **TEACHERS[name]["model"]).to(s.device).eval()
        flops, label = flops_per_sample(teacher), f"teacher {name}"
        row(label, "float32 cached", cached_rate(teacher, 1, s, engine="step")[0], flops)
        conv = teacher.blocks[0].conv
        taps = conv.in_channels * conv.kernel_size[0]
        dtypes = (torch.float32, torch.bfloat16)
        f32, b16 = (matvec_us(s, taps, conv.out_channels, d) for d in dtypes)
        why = (
            f"not offered: one ({taps} x {conv.out_channels}) matrix-vector product takes "
            f"{b16:.1f} us in torch bf16 against {f32:.1f} us in numpy float32"
        )
        row(label, "bfloat16 cached", "n/a", flops, why)
        del student, teacher
        gc.collect()
    return rows


BENCHMARKS: dict[str, Callable[[Settings], list[dict[str, object]]]] = {
    "teacher": teacher_rows,
    "student": student_rows,
    "paths": path_rows,
}


# --------------------------------------------------------------------------- the table


def cell(value: object) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def markdown(rows: Sequence[dict[str, object]]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def header(s: Settings) -> str:
    return (
        f"Device: {device_name(s.device)} ({s.device.type}), {torch.get_num_threads()} torch "
        f"threads, float32, torch {torch.__version__}, numpy {np.__version__}. Best of repeated "
        f"runs within {s.seconds:g} s per measurement. Memory: {PeakMemory.describe(s.device)}. "
        f"Matrix-product peak: {matmul_peak(s):.0f} GFLOP/s (2048 x 2048, float32), "
        f"{matmul_peak(s, torch.bfloat16):.0f} GFLOP/s in bf16 (bf16 units: "
        f"{bf16_units(s.device) or 'none, emulated'})."
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmark",
        description=(
            "Measure the teacher (parameters, receptive field, training throughput, cached and "
            "naive generation speed, peak memory) for named configurations and print the "
            "results as a Markdown table."
        ),
    )
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="Where to run the models (default: cpu).",
    )
    parser.add_argument(
        "--configs",
        default="tiny,practical",
        help=f"Comma-separated configurations out of {', '.join(TEACHERS)} "
        "(default: tiny,practical).",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=5.0,
        help="The time budget of each measurement in seconds; every measurement runs at least "
        "twice (default: 5).",
    )
    parser.add_argument(
        "--tables",
        default="teacher,student",
        help=f"Comma-separated tables out of {', '.join(BENCHMARKS)} (default: teacher,student).",
    )
    parser.add_argument(
        "--long-seconds",
        type=float,
        default=60.0,
        help="Utterance length of the student's peak-memory measurement (default: 60).",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="The number of torch threads (default: torch's own choice).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="Also write the table, with its header line, to this Markdown file.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in TEACHERS]
    if unknown or not configs:
        parser.error(f"unknown configuration(s) {unknown}; choose from {', '.join(TEACHERS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    tables = [t.strip() for t in args.tables.split(",") if t.strip()]
    if not tables or any(t not in BENCHMARKS for t in tables):
        parser.error(f"unknown table(s) in {args.tables!r}; choose from {', '.join(BENCHMARKS)}")
    s = Settings(torch.device(args.device), configs, args.seconds, args.long_seconds)
    parts = [header(s)]
    for name in tables:
        parts.append(f"### {name.capitalize()}\n\n{markdown(BENCHMARKS[name](s))}")
    text = "\n\n".join(parts) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
