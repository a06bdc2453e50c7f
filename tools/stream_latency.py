#!/usr/bin/env python
"""Streaming synthesis of the student: latency to the first audio and real-time factor per chunk
size, printed as a Markdown table (docs/serving.md, "Streaming").

Example: ``python tools/stream_latency.py --threads 2 --configs practical,tiny``. Random weights
(the output layers drawn small, as tools/benchmark.py does): speed does not depend on them.

- *first audio*: frames arrive in real time (a chunk every chunk duration) from the first push;
  the time until a push first returns audio. It includes the wait for the upsampler's lookahead
  (``Upsampler.edge_frames``, 2 frames: a frame's audio needs the 2 frames after it), shown
  on its own as *lookahead wait*, and the stream's set-up (its buffers; the folded weights are
  made once per model and dtype, before the clock starts).
- *steady RTF*: the pushes after the first audio, back to back: compute time / audio time.
- *offline RTF*: :meth:`Student.synthesize` of the whole utterance in one pass, for comparison.

:func:`stream_rows` returns the rows as dicts (tools/benchmark.py can add them to its tables);
:func:`batch_rows` and :func:`process_rows` measure concurrent streams.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import time
from collections.abc import Sequence

import torch

from pwavenet.models.streaming import StudentStream, flow_weights
from pwavenet.models.student import Student

SAMPLE_RATE = 22050  # real-time factors are stated at this rate
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def build(name: str, seed: int = 0) -> Student:
    """The student of tools/benchmark.py's ``STUDENTS[name]`` (80 mels, hop 256), random
    weights with small output layers."""
    import benchmark  # tools/benchmark.py (imported here: it may import this module too)

    torch.manual_seed(seed)
    model = Student(**benchmark.COMMON, **benchmark.STUDENTS[name]["model"]).eval()
    with torch.no_grad():  # the output layers start at zero: give the flows some work
        for flow in model.flows:
            torch.nn.init.normal_(flow.out.weight, std=0.01)
    return model


def _mel(model: Student, batch: int, seconds: float) -> torch.Tensor:
    frames = max(1, round(seconds * SAMPLE_RATE / model.hop_length))
    return torch.randn(batch, model.n_mels, frames, generator=torch.Generator().manual_seed(1))


def _run_stream(model: Student, mel: torch.Tensor, chunk: int, dtype: torch.dtype) -> dict:
    """One stream of ``mel (B, M, F)`` in chunks of ``chunk`` frames arriving in real time
    until the first audio, then back to back: ``{"first", "rtf"}`` (seconds, ratio)."""
    batch, hop = mel.shape[0], model.hop_length
    period = chunk * hop / SAMPLE_RATE
    gens = [torch.Generator().manual_seed(b) for b in range(batch)]
    start = time.perf_counter()
    stream = StudentStream(model, batch=batch, generator=gens, dtype=dtype)
    first, busy, samples = None, 0.0, 0
    for k, i in enumerate(range(0, mel.shape[-1], chunk)):
        if first is None:  # wait for chunk k to arrive
            time.sleep(max(0.0, start + k * period - time.perf_counter()))
        began = time.perf_counter()
        audio = stream.push(mel[..., i : i + chunk])
        if first is None:
            if audio.shape[-1]:
                first = time.perf_counter() - start
        else:
            busy += time.perf_counter() - began
            samples += audio.shape[-1]
    return {"first": first, "rtf": busy * SAMPLE_RATE / max(samples, 1)}


def _offline_rtf(model: Student, mel: torch.Tensor, dtype: torch.dtype, repeats: int) -> float:
    context = contextlib.nullcontext()
    if dtype != torch.float32:
        context = torch.autocast("cpu", dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        with torch.inference_mode(), context:
            model.synthesize(mel, generator=torch.Generator().manual_seed(0))
        best = min(best, time.perf_counter() - began)
    return best * SAMPLE_RATE / (mel.shape[0] * mel.shape[-1] * model.hop_length)


def stream_rows(
    model: Student,
    chunks: Sequence[int] = (1, 2, 4, 8, 16, 32),
    seconds: float = 2.0,
    repeats: int = 2,
    dtype: torch.dtype = torch.float32,
) -> list[dict]:
    """One row per chunk size (frames): latency to the first audio and steady real-time factor
    of one stream of ``seconds`` of audio (best of ``repeats``), and the offline RTF of the
    same utterance."""
    mel = _mel(model, 1, seconds)
    hop, lookahead = model.hop_length, model.upsampler.edge_frames
    for flow in model.flows:
        flow_weights(flow, dtype)  # once per model and dtype, as a server would
    offline = _offline_rtf(model, mel, dtype, repeats)
    rows = []
    for chunk in chunks:
        runs = [_run_stream(model, mel, chunk, dtype) for _ in range(repeats)]
        waited = (lookahead // chunk) * chunk  # frames pushed before the chunk that releases
        rtf = min(r["rtf"] for r in runs)
        rows.append(
            {
                "chunk (frames)": chunk,
                "chunk (ms)": 1000 * chunk * hop / SAMPLE_RATE,
                "lookahead wait (ms)": 1000 * waited * hop / SAMPLE_RATE,
                "first audio (ms)": 1000 * min(r["first"] for r in runs),
                "steady RTF": rtf,
                "samples/s": SAMPLE_RATE / rtf,
                "offline RTF": offline,
            }
        )
    return rows


def batch_rows(
    model: Student,
    chunk: int,
    batches: Sequence[int] = (1, 2, 4, 8),
    seconds: float = 2.0,
    dtype: torch.dtype = torch.float32,
) -> list[dict]:
    """Streams advancing together as one batch: the steady RTF of the batch (real time for all
    of them while below 1)."""
    rows = []
    for batch in batches:
        rtf = _run_stream(model, _mel(model, batch, seconds), chunk, dtype)["rtf"]
        rows.append(
            {"streams": batch, "how": "one process, batched", "chunk (frames)": chunk, "RTF": rtf}
        )
    return rows


def _process_rtf(args: tuple) -> float:
    name, chunk, seconds, dtype = args
    torch.set_num_threads(1)
    model = build(name)
    mel = _mel(model, 1, seconds)
    _run_stream(model, mel[..., : 4 * chunk], chunk, dtype)  # warm up
    return _run_stream(model, mel, chunk, dtype)["rtf"]


def process_rows(
    name: str,
    chunk: int,
    processes: Sequence[int] = (1, 2),
    seconds: float = 2.0,
    dtype: torch.dtype = torch.float32,
) -> list[dict]:
    """Separate processes of one thread each, one stream each, all at once: the slowest RTF."""
    rows = []
    context = multiprocessing.get_context("spawn")
    for count in processes:
        with context.Pool(count) as pool:
            rtfs = pool.map(_process_rtf, [(name, chunk, seconds, dtype)] * count)
        rows.append(
            {
                "streams": count,
                "how": "processes, 1 thread each",
                "chunk (frames)": chunk,
                "RTF": max(rtfs),
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    """Rows as a Markdown table (tools/benchmark.py's ``markdown``)."""
    import benchmark  # imported here: tools/benchmark.py imports this module

    return benchmark.markdown(rows)


def header(dtype: torch.dtype, seconds: float) -> str:
    import benchmark

    return (
        f"CPU: {benchmark.device_name(torch.device('cpu'))}, {torch.get_num_threads()} torch "
        f"threads, torch {torch.__version__}, flows' matrix products in "
        f"{str(dtype).removeprefix('torch.')}; hop 256 at {SAMPLE_RATE} Hz; one utterance of "
        f"{seconds:g} s per measurement, best of the repeats. First audio includes the "
        "upsampler's lookahead (2 frames)."
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="stream_latency", description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="practical,tiny", help="Students of tools/benchmark.py.")
    p.add_argument("--chunks", default="1,2,4,8,16,32", help="Chunk sizes in frames.")
    p.add_argument("--seconds", type=float, default=2.0, help="Audio per measurement.")
    p.add_argument("--repeats", type=int, default=2, help="Runs per measurement (best kept).")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="Flows' products.")
    p.add_argument("--threads", type=int, default=None, help="torch threads.")
    p.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="Also measure concurrent streams (batched; separate processes) at this chunk size.",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype]
    chunks = [int(c) for c in args.chunks.split(",")]
    print(header(dtype, args.seconds) + "\n")
    for name in args.configs.split(","):
        model = build(name)
        rows = [{"student": name, **r} for r in stream_rows(model, chunks, args.seconds,
                                                            args.repeats, dtype)]  # fmt: skip
        print(table(rows) + "\n", flush=True)
    if args.concurrency:
        model = build("practical")
        rows = batch_rows(model, args.concurrency, seconds=args.seconds, dtype=dtype)
        rows += process_rows("practical", args.concurrency, seconds=args.seconds, dtype=dtype)
        print(table([{"student": "practical", **r} for r in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
