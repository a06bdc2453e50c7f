#!/usr/bin/env python
"""Peak resident memory of ``pwavenet synthesize`` (teacher and student) and ``pwavenet evaluate``
on one long utterance, each in a fresh process, printed as a Markdown table.

Example: ``python tools/long_input_memory.py --teacher RUN/teacher/export --student
RUN/student/export --seconds 60``. Without exports it builds small ones (what the test of
``tests/test_long_inputs.py`` does). The reference is a harmonic tone with vibrato at the
exports' sample rate; synthesis reads it as audio, as a user's reference would be.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PWAVENET = [sys.executable, "-m", "pwavenet"]  # this interpreter's, whatever PATH holds
MEASURE = (
    "import resource, subprocess, sys; "
    "rc = subprocess.run(sys.argv[1:]).returncode; "
    "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_mib(args: list[str]) -> tuple[float, float]:
    """Peak resident set size in MiB of the command ``args`` run in a fresh child process (its
    own, not this process's), and its wall time in seconds. Raises if it fails."""
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *args], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - began
    if not done.stdout.strip():
        raise RuntimeError(f"{' '.join(args)}: could not run: {done.stderr.strip()[-500:]}")
    rc, kib = done.stdout.strip().splitlines()[-1].split()
    if int(rc) != 0:
        raise RuntimeError(f"{' '.join(args)} exited {rc}: {done.stderr.strip()[-500:]}")
    return int(kib) / 1024, seconds


def small_exports(root: Path, sample_rate: int = 16000) -> tuple[Path, Path]:
    """A small teacher and student export at ``sample_rate`` with the real feature size (80 mel
    bands, hop 256): memory over a long utterance scales with its features, not the weights."""
    import torch

    from pwavenet.config import Config
    from pwavenet.models.export import save_export
    from pwavenet.train.distill import build_student, student_args
    from pwavenet.train.teacher import build_teacher, teacher_args

    cfg = Config()
    cfg.audio.sample_rate, cfg.audio.fmax = sample_rate, sample_rate / 2
    t = cfg.teacher
    t.layers, t.cycles, t.residual_channels, t.gate_channels, t.skip_channels = 6, 2, 16, 32, 16
    t.mixtures = 3
    s = cfg.student
    s.flow_layers, s.layers_per_cycle, s.residual_channels, s.gate_channels = [4, 4], 4, 16, 32
    torch.manual_seed(0)
    teacher = save_export(
        build_teacher(cfg), root / "teacher", kind="teacher", model_args=teacher_args(cfg), cfg=cfg
    )
    student = save_export(
        build_student(cfg, -2.0),
        root / "student",
        kind="student",
        model_args=student_args(cfg, -2.0),
        cfg=cfg,
    )
    return teacher, student


def reference(path: Path, seconds: float, rate: int) -> Path:
    from pwavenet.audio import write_wav

    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wav = sum(0.3 / k * np.sin(k * phase) for k in (1, 2, 3)).astype(np.float32)
    return write_wav(path, wav, rate)


def measure(teacher: Path, student: Path, seconds: float, work: Path) -> list[dict]:
    """Rows of the table: each command's peak RSS and wall time on one utterance."""
    rate = json.loads((teacher / "model.json").read_text())["audio"]["sample_rate"]
    ref = reference(work / "refs" / "long.wav", seconds, rate)
    rows = []
    for kind, export in (("teacher", teacher), ("student", student)):
        out = work / kind
        mib, took = peak_mib([*PWAVENET, "synthesize", str(export), str(ref), "--out", str(out)])
        rows.append({"command": f"synthesize ({kind})", "peak RSS (MiB)": mib, "seconds": took})
    systems = [f"--system={k}={work / k}" for k in ("teacher", "student")]
    args = [*PWAVENET, "evaluate", str(ref), "--out", str(work / "eval"), *systems]
    mib, took = peak_mib([*args, "--features", str(teacher)])
    rows.append({"command": "evaluate (both, Griffin-Lim)", "peak RSS (MiB)": mib, "seconds": took})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="long_input_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", type=Path, help="Teacher export (default: a small one).")
    parser.add_argument("--student", type=Path, help="Student export (default: a small one).")
    parser.add_argument("--seconds", type=float, default=60.0, help="Utterance length (60).")
    parser.add_argument("--work", type=Path, default=Path("long_input_memory"), help="Folder.")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    teacher, student = args.teacher, args.student
    if teacher is None or student is None:
        teacher, student = small_exports(args.work / "exports")
    rows = measure(teacher, student, args.seconds, args.work)
    print(f"One {args.seconds:g} s utterance; teacher {teacher}, student {student}.\n")
    print("| command | peak RSS (MiB) | seconds |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['command']} | {r['peak RSS (MiB)']:,.0f} | {r['seconds']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
