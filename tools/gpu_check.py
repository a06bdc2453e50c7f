#!/usr/bin/env python
"""The GPU check behind ``tools/gpu_check.sh``: everything a short GPU lease must prove, in an
order that leaves the first results if the run is cut short.

Stages, each writing its files under ``OUT`` as soon as it ends (``summary.md`` is rewritten
after every stage):

1. ``environment.json``: the device, torch and CUDA, the matrix-product rates;
2. ``correctness.{json,md}``: cached generation equals teacher forcing (both heads, the fused
   step as a CUDA graph), batched equals per-utterance generation, the student's chunked and
   batched synthesis equal the plain one, one bf16 step of each training task is finite with
   float32 loss maths, exports written on the device load on the CPU with the same output,
   and the fused-step tests (``tests/test_fused.py``) pass on the device;
3. ``benchmark.{json,md}``: training, distillation, synthesis and generation speed with the
   FLOPs per sample and the share of the matrix-product rate they reach;
4. ``demo/`` and ``demo.json``: ``pwavenet demo --size gpu`` end to end, timed, its targets;
5. ``planning.md``: steps per hour and GPU-hours of the LJSpeech recipe, derived from (3);
6. ``multiprocess.json``: the two-process training test (gloo on the CPU: NCCL cannot put two
   processes on one GPU), late because it needs no GPU;
7. ``compile.json``: teacher training with ``torch.compile`` against eager, compile time apart.

A stage that starts with less than 30 s of the budget left is skipped and says so.

``--dry-run`` runs every stage on the CPU at toy sizes (what CI runs), writing the same files.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import benchmark as bench  # noqa: E402  (tools/benchmark.py)

from pwavenet.config import AudioConfig, DistillConfig, load_config  # noqa: E402
from pwavenet.models.student import Student  # noqa: E402
from pwavenet.models.teacher import WaveNet  # noqa: E402
from pwavenet.train.distill import DistillTask  # noqa: E402
from pwavenet.train.teacher import TeacherTask  # noqa: E402

# What each mode measures: model sizes of tools/benchmark.py, synthesis utterance length and
# batches, generation batches, the time budget of one measurement, the demo size, the frames
# of the run that sizes a generation measurement, torch.compile's backend, the
# wall-clock budget of the whole check (the demo gets what is left, at most ``demo_seconds``).
FULL = dict(
    size="practical",
    synth_seconds=10.0,
    batches=(1, 16),
    seconds=3.0,
    demo="gpu",
    probe=4,
    compile_backend="inductor",
    budget=540.0,
    demo_seconds=400.0,
    check_frames=16,
)
DRY = dict(
    size="tiny",
    synth_seconds=0.25,
    batches=(1, 2),
    seconds=0.2,
    demo="quick",
    probe=1,
    compile_backend="aot_eager",  # traces like inductor, without generating C++ (minutes on CI)
    budget=1800.0,
    demo_seconds=900.0,
    check_frames=4,
)
TOLERANCE = {"teacher": 1e-4, "student": 1e-4, "export": 1e-5}


class Check:
    """The results folder: stage outcomes, the summary, and the wall-clock budget."""

    def __init__(self, out: Path, device: torch.device, mode: dict, dry: bool) -> None:
        self.out, self.device, self.mode, self.dry = out, device, mode, dry
        self.start = time.perf_counter()
        self.stages: dict[str, dict] = {}
        self.sections: dict[str, str] = {}
        self.env: dict = {}
        self.bench: dict = {}

    def left(self) -> float:
        return self.mode["budget"] - (time.perf_counter() - self.start)

    def write(self, name: str, data: object) -> None:
        (self.out / name).write_text(json.dumps(data, indent=2, default=str) + "\n")

    def run(self, name: str, fn: Callable[[Check], str]) -> None:
        began = time.perf_counter()
        if self.left() < 30:  # the lease ends soon: keep what was found
            self.stages[name] = {"ok": True, "seconds": 0.0, "skipped": "out of time"}
            self.sections[name] = (
                f"Skipped: less than 30 s of the {self.mode['budget']:g} s budget left."
            )
            print(f"== {name}: skipped (out of time)", flush=True)
            self.summary()
            return
        print(f"== {name}", flush=True)
        try:
            section, ok = fn(self), True
        except Exception:  # record and go on: a later stage may still work
            section, ok = f"Stage failed:\n\n```\n{traceback.format_exc()}```", False
            print(traceback.format_exc(), file=sys.stderr, flush=True)
        seconds = time.perf_counter() - began
        self.stages[name] = {"ok": ok, "seconds": round(seconds, 1)}
        self.sections[name] = section
        print(f"== {name}: {'ok' if ok else 'FAILED'} ({seconds:.1f} s)", flush=True)
        self.summary()

    def summary(self) -> None:
        lines = [
            f"# GPU check{' (dry run on the CPU)' if self.dry else ''}",
            "",
            f"Device: {bench.device_name(self.device)} ({self.device.type}); "
            f"torch {torch.__version__}; wall time {time.perf_counter() - self.start:.0f} s.",
            "",
            "| stage | result | seconds |",
            "|---|---|---:|",
        ]
        for name, r in self.stages.items():
            verdict = "skipped" if r.get("skipped") else ("ok" if r["ok"] else "FAILED")
            lines.append(f"| {name} | {verdict} | {r['seconds']} |")
        for name, text in self.sections.items():
            lines += ["", f"## {name}", "", text.rstrip()]
        (self.out / "summary.md").write_text("\n".join(lines) + "\n")
        self.write("stages.json", self.stages)


def table(rows: list[dict]) -> str:
    shown = [
        {k: ("yes" if v else "NO") if v is True or v is False else v for k, v in r.items()}
        for r in rows
    ]
    return bench.markdown(shown) if rows else "(nothing measured)"


# --------------------------------------------------------------------------- 1. environment


def environment(c: Check) -> str:
    s = bench.Settings(c.device, [c.mode["size"]], c.mode["seconds"])
    env = {
        "device": bench.device_name(c.device),
        "device_type": c.device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": sys.version.split()[0],
        "cpu_threads": torch.get_num_threads(),
        "matmul_gflops_float32": bench.matmul_peak(s),
        "matmul_gflops_bf16": bench.matmul_peak(s, torch.bfloat16),
        "dry_run": c.dry,
    }
    if c.device.type == "cuda":
        props = torch.cuda.get_device_properties(c.device)
        env["gpu_memory_gib"] = props.total_memory / 2**30
        env["capability"] = f"{props.major}.{props.minor}"
    c.write("environment.json", env)
    c.env = env
    return "\n".join(
        f"- {k}: {v:.0f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in env.items()
    )


# --------------------------------------------------------------------------- 2. correctness


def _teacher(size: str, device: torch.device, **kw) -> WaveNet:
    torch.manual_seed(0)
    model = WaveNet(**bench.COMMON, **{**bench.TEACHERS[size]["model"], **kw})
    with torch.no_grad():  # away from the initial state (zero-initialised heads are too easy)
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.to(device).eval()


def _student(size: str, device: torch.device) -> Student:
    torch.manual_seed(0)
    model = Student(**bench.COMMON, **bench.STUDENTS[size]["model"])
    with torch.no_grad():
        for flow in model.flows:
            torch.nn.init.normal_(flow.out.weight, std=0.01)
    return model.to(device).eval()


def _row(name: str, error: float, tol: float, note: str = "") -> dict:
    ok = math.isfinite(error) and error <= tol
    return {"check": name, "passed": ok, "max abs error": error, "tolerance": tol, "note": note}


def _generation_checks(c: Check, frames: int) -> list[dict]:
    dev, size, rows = c.device, c.mode["size"], []
    engine = "graph" if dev.type == "cuda" else "fused"
    g = torch.Generator().manual_seed(0)
    for output in ("mol", "gaussian"):
        model = _teacher(size, dev, output=output)
        mel = torch.randn(2, 80, frames, generator=g).to(dev)
        audio = ((torch.rand(2, 1, frames * 256, generator=g) * 2 - 1) * 0.5).to(dev)
        with torch.no_grad():
            want = model(audio, mel)
        for eng in (engine, "step"):
            _, got = model.generate(mel, forced=audio[:, 0], return_params=True, engine=eng)
            err = (got - want).abs().max().item()
            rows.append(_row(f"teacher {output}: cached ({eng}) = teacher forcing", err, 1e-4))
    model = _teacher(size, dev)
    mel = torch.randn(2, 80, frames, generator=g).to(dev)
    lengths = [frames * 256, (frames // 2) * 256]
    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    both, _ = model.generate(mel, lengths=lengths, generator=gens, engine=engine)
    err = 0.0
    for b, n in enumerate(lengths):
        alone, _ = model.generate(
            mel[b : b + 1, :, : n // 256],
            generator=torch.Generator().manual_seed(5 + b),
            engine=engine,
        )
        err = max(err, (both[b, :n] - alone[0]).abs().max().item())
    rows.append(_row(f"teacher: batched = per-utterance generation ({engine})", err, 1e-4))
    return rows


def _student_checks(c: Check, frames: int) -> list[dict]:
    dev, rows = c.device, []
    model = _student(c.mode["size"], dev)
    g = torch.Generator().manual_seed(1)
    mel = torch.randn(2, 80, frames * 4, generator=g).to(dev)
    steps = mel.shape[-1] * 256
    noise = model.noise([steps, steps], torch.Generator().manual_seed(2), dev)
    whole = model.synthesize(mel, noise=noise)
    chunked = model.synthesize(mel, noise=noise, chunk_samples=steps // 3 + 1)
    rows.append(_row("student: chunked = unchunked", (whole - chunked).abs().max().item(), 1e-4))
    alone = torch.cat([model.synthesize(mel[b : b + 1], noise=noise[b : b + 1]) for b in (0, 1)])
    rows.append(_row("student: batched = per-utterance", (whole - alone).abs().max().item(), 1e-4))
    with torch.autocast(dev.type, dtype=torch.bfloat16):
        low = model.synthesize(mel, noise=noise)
    snr = 10 * math.log10(whole.pow(2).sum().item() / max((whole - low).pow(2).sum().item(), 1e-30))
    rows.append(
        {
            "check": "student: bf16 synthesis SNR to float32 (dB, >= 30)",
            "passed": snr >= 30,
            "max abs error": (whole - low).abs().max().item(),
            "tolerance": "SNR >= 30 dB",
            "note": f"SNR {snr:.1f} dB",
        }
    )
    return rows


def _bf16_training_checks(c: Check) -> list[dict]:
    dev, size, rows = c.device, c.mode["size"], []
    teacher = _teacher(size, dev).train()
    g = torch.Generator().manual_seed(3)
    length = 4096
    batch = {
        "audio": ((torch.rand(2, 1, length, generator=g) * 2 - 1) * 0.3).to(dev),
        "mel": torch.randn(2, 80, length // 256, generator=g).to(dev),
        "lengths": torch.full((2,), length, device=dev),
    }
    student = _student(size, dev).train()

    def distill() -> DistillTask:  # made when used: distillation freezes its teacher
        return DistillTask(_teacher(size, dev), DistillConfig(samples=4), AudioConfig())

    tasks = [("teacher", teacher, TeacherTask), ("distillation", student, distill)]
    for name, model, make in tasks:
        task = make()
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            loss, _ = task.loss(model, batch)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        finite = bool(torch.isfinite(loss)) and all(torch.isfinite(x).all() for x in grads)
        rows.append(
            {
                "check": f"{name}: one bf16 step is finite, loss maths in float32",
                "passed": finite and loss.dtype == torch.float32 and len(grads) > 0,
                "max abs error": float(loss.detach()),
                "tolerance": "finite, float32",
                "note": f"loss {float(loss.detach()):.3f} ({loss.dtype}), {len(grads)} gradients",
            }
        )
    return rows


def _export_checks(c: Check, frames: int) -> list[dict]:
    from pwavenet.config import Config
    from pwavenet.models.export import load_student, load_teacher, save_export

    dev, size, rows = c.device, c.mode["size"], []
    cfg = Config()
    teacher, student = _teacher(size, dev), _student(size, dev)
    t_args = {**bench.COMMON, **bench.TEACHERS[size]["model"]}
    s_args = {**bench.COMMON, **bench.STUDENTS[size]["model"]}
    save_export(teacher, c.out / "exports" / "teacher", kind="teacher", model_args=t_args, cfg=cfg)
    save_export(student, c.out / "exports" / "student", kind="student", model_args=s_args, cfg=cfg)
    g = torch.Generator().manual_seed(4)
    mel = torch.randn(1, 80, frames, generator=g)
    audio = (torch.rand(1, 1, frames * 256, generator=g) * 2 - 1) * 0.5
    with torch.no_grad():
        here = teacher(audio.to(dev), mel.to(dev)).cpu()
        there = load_teacher(c.out / "exports" / "teacher", "cpu")(audio, mel)
    rows.append(
        _row("teacher export: device -> CPU, same output", (here - there).abs().max().item(), 1e-3)
    )
    noise = student.noise([frames * 256], torch.Generator().manual_seed(5), "cpu")
    here = student.synthesize(mel.to(dev), noise=noise.to(dev)).cpu()
    there = load_student(c.out / "exports" / "student", "cpu").synthesize(mel, noise=noise)
    rows.append(
        _row("student export: device -> CPU, same output", (here - there).abs().max().item(), 1e-3)
    )
    return rows


def _pytest_check(c: Check) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fused.py"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    last = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    return {
        "check": f"tests/test_fused.py on {c.device.type}",
        "passed": done.returncode == 0,
        "max abs error": "",
        "tolerance": "",
        "note": last,
    }


def correctness(c: Check) -> str:
    torch.backends.cudnn.allow_tf32 = False  # float32 comparisons: no TF32 convolutions
    torch.backends.cuda.matmul.allow_tf32 = False
    frames = c.mode["check_frames"]
    rows = _generation_checks(c, frames) + _student_checks(c, frames)
    rows += _bf16_training_checks(c) + _export_checks(c, frames) + [_pytest_check(c)]
    c.write("correctness.json", rows)
    text = table(rows)
    (c.out / "correctness.md").write_text(text + "\n")
    failed = [r["check"] for r in rows if not r["passed"]]
    if failed:
        raise AssertionError(f"failed checks: {failed}\n\n{text}")
    return text


# --------------------------------------------------------------------------- 3. benchmark


def benchmark(c: Check) -> str:
    torch.backends.cudnn.allow_tf32 = True  # speed: what a user's training run would use
    torch.backends.cuda.matmul.allow_tf32 = True
    m, dev = c.mode, c.device
    s = bench.Settings(dev, [m["size"]], m["seconds"])
    peak = {"float32": bench.matmul_peak(s), "bf16": bench.matmul_peak(s, torch.bfloat16)}
    teacher = _teacher(m["size"], dev)
    student = _student(m["size"], dev)
    t_flops, s_flops = bench.flops_per_sample(teacher), bench.flops_per_sample(student)
    rows: list[dict] = []

    def add(what: str, dtype: str, rate: float, flops: float, extra: str = "") -> None:
        gflops = rate * flops / 1e9
        rows.append(
            {
                "measurement": what,
                "dtype": dtype,
                "samples/s": rate,
                "MFLOP/sample": flops / 1e6,
                "GFLOP/s": gflops,
                "% of matmul peak": 100 * gflops / peak[dtype],
                "note": extra,
            }
        )

    clips, length = bench.TEACHERS[m["size"]]["train"]
    for name, dtype in (("float32", None), ("bf16", torch.bfloat16)):
        rate, mib = bench.train_rate(teacher, clips, length, s, dtype)
        add(f"teacher training {clips} x {length}", name, rate, 3 * t_flops, f"peak {mib:.0f} MiB")
    teacher.eval()
    clips, length = bench.STUDENTS[m["size"]]["train"]
    for name, dtype in (("float32", None), ("bf16", torch.bfloat16)):
        rate = bench.distill_rate(student, teacher, clips, length, s, dtype)
        flops = 3 * s_flops + 16 * t_flops  # student fwd+bwd, 16 teacher draws (forward)
        add(f"distillation {clips} x {length}, M = 16", name, rate, flops)
    for batch in m["batches"]:
        for name, dtype in (("float32", None), ("bf16", torch.bfloat16)):
            rate, mib = bench.synth_rate(student, batch, m["synth_seconds"], s, dtype=dtype)
            add(
                f"student synthesis B={batch}, {m['synth_seconds']:g} s",
                name,
                rate,
                s_flops,
                f"peak {mib:.0f} MiB",
            )
    engines = ("graph", "step") if dev.type == "cuda" else ("fused", "step")
    for batch in m["batches"]:
        for engine in engines:
            rate, _ = bench.cached_rate(teacher, batch, s, engine=engine, probe=m["probe"])
            add(f"teacher cached generation B={batch} ({engine})", "float32", rate, t_flops)
    data = {"peak_gflops": peak, "rows": rows, "device": bench.device_name(dev)}
    c.write("benchmark.json", data)
    c.bench = data
    text = (
        f"Device: {bench.device_name(dev)}; matrix-product rate {peak['float32']:.0f} GFLOP/s "
        f"float32, {peak['bf16']:.0f} GFLOP/s bf16 (2048 x 2048). Model sizes: teacher and "
        f"student `{m['size']}` of tools/benchmark.py. FLOPs per sample count the 1-D "
        "convolutions (training: 3x the forward).\n\n" + table(rows)
    )
    (c.out / "benchmark.md").write_text(text + "\n")
    return text


# --------------------------------------------------------------------------- 4. multi-process


def multiprocess(c: Check) -> str:
    cmd = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "tests/test_training.py::test_two_processes_equal_one_with_the_same_global_batch",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    last = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    result = {
        "command": " ".join(cmd[1:]),
        "passed": done.returncode == 0,
        "result": last,
        "note": "gloo on the CPU; NCCL cannot run two processes on one GPU",
    }
    c.write("multiprocess.json", result)
    if done.returncode != 0:
        raise AssertionError(done.stdout[-3000:] + done.stderr[-2000:])
    return f"`{result['command']}`: {last} ({result['note']})."


# --------------------------------------------------------------------------- 5. demo


def demo(c: Check) -> str:
    size, out = c.mode["demo"], c.out / "demo"
    limit = max(60.0, min(c.mode["demo_seconds"], c.left()))
    cmd = [sys.executable, "-m", "pwavenet", "demo", "--out", str(out)]
    cmd += ["--quick"] if size == "quick" else ["--size", size]
    began = time.perf_counter()
    with open(c.out / "demo.log", "w") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=limit)
    seconds = time.perf_counter() - began
    record = json.loads((out / "demo.json").read_text()) if (out / "demo.json").is_file() else {}
    result = {"size": size, "exit": done.returncode, "wall_seconds": seconds, "record": record}
    c.write("demo.json", result)
    if done.returncode != 0:
        raise AssertionError(f"demo exited {done.returncode}; see demo.log")
    lines = [f"`pwavenet demo --size {size}`: {seconds:.0f} s wall time.", ""]
    for t in record.get("targets", []):
        verdict = {True: "met", False: "NOT met", None: "n/a"}[t["met"]]
        lines.append(f"- {t['target']}: {verdict} ({t['measured']})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- 6. planning


def planning(c: Check) -> str:
    data = c.bench or json.loads((c.out / "benchmark.json").read_text())
    rate = {r["measurement"].split()[0] + "/" + r["dtype"]: r["samples/s"] for r in data["rows"]}
    rows = []
    for kind, key in (("teacher", "teacher/bf16"), ("student", "distillation/bf16")):
        cfg = load_config(ROOT / "recipes" / "ljspeech" / "conf" / f"{kind}.yaml")
        per_step = cfg.data.batch_size * cfg.data.segment_length
        steps_per_hour = rate[key] * 3600 / per_step
        hours = cfg.train.max_steps / steps_per_hour
        rows.append(
            {
                "recipe": f"ljspeech {kind}",
                "samples per step (per GPU)": per_step,
                "max_steps": cfg.train.max_steps,
                "steps/hour on 1 GPU": steps_per_hour,
                "GPU-hours": hours,
                "hours on 8 GPUs (global batch x 8)": hours / 8,
            }
        )
    text = (
        f"Derived from the bf16 rates measured above on {data['device']} (model sizes "
        f"`{c.mode['size']}`), not from a recipe run. On 8 GPUs each process takes the per-GPU "
        "batch, so the same max_steps covers 8x the data; the column assumes perfect scaling.\n\n"
        + table(rows)
    )
    (c.out / "planning.md").write_text(text + "\n")
    return text


# --------------------------------------------------------------------------- 7. compile


def compiled(c: Check) -> str:
    """Teacher training throughput with ``torch.compile`` against eager (bf16 autocast on CUDA,
    float32 on the CPU), compile time apart. A failure to compile is a finding, recorded."""
    m, dev = c.mode, c.device
    s = bench.Settings(dev, [m["size"]], m["seconds"])
    dtype = torch.bfloat16 if dev.type == "cuda" else None
    clips, length = bench.TEACHERS[m["size"]]["train"]
    eager, _ = bench.train_rate(_teacher(m["size"], dev), clips, length, s, dtype)
    result = {"eager_samples_per_s": eager, "dtype": str(dtype or torch.float32)}
    result["backend"] = m["compile_backend"]
    try:
        model = _teacher(m["size"], dev)
        model.forward = torch.compile(model.forward, backend=m["compile_backend"])
        began = time.perf_counter()
        bench.train_rate(model, clips, length, bench.Settings(dev, [m["size"]], 0.0), dtype)
        result["compile_seconds"] = time.perf_counter() - began
        result["compiled_samples_per_s"], _ = bench.train_rate(model, clips, length, s, dtype)
        result["speed-up"] = result["compiled_samples_per_s"] / eager
        text = (
            f"Teacher training ({clips} x {length}, {result['dtype']}, torch.compile backend "
            f"{result['backend']}): eager {eager:,.0f}, "
            f"compiled {result['compiled_samples_per_s']:,.0f} samples/s "
            f"({result['speed-up']:.2f}x; compiling took {result['compile_seconds']:.0f} s)."
        )
    except Exception as exc:  # no compiler on the machine, an unsupported op, ...
        result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        text = f"Eager {eager:,.0f} samples/s; torch.compile failed: {result['error']}"
    c.write("compile.json", result)
    return text


STAGES: dict[str, Callable[[Check], str]] = {
    "environment": environment,
    "correctness": correctness,
    "benchmark": benchmark,
    "demo": demo,
    "planning": planning,
    "multiprocess": multiprocess,
    "compile": compiled,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="Results folder (created).")
    parser.add_argument("--dry-run", action="store_true", help="Every stage on the CPU, toy sizes.")
    parser.add_argument("--stages", default=",".join(STAGES), help="Comma-separated stages to run.")
    args = parser.parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    if unknown := [s for s in stages if s not in STAGES]:
        parser.error(f"unknown stage(s) {unknown}; choose from {', '.join(STAGES)}")
    if not args.dry_run and not torch.cuda.is_available():
        print(
            "gpu_check: torch sees no CUDA device; use --dry-run to check on the CPU",
            file=sys.stderr,
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu" if args.dry_run else "cuda")
    check = Check(args.out, device, DRY if args.dry_run else FULL, args.dry_run)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    for name in stages:
        check.run(name, STAGES[name])
    failed = [n for n, r in check.stages.items() if not r["ok"]]
    print(
        f"gpu_check: {len(stages) - len(failed)}/{len(stages)} stages ok; "
        f"summary in {args.out / 'summary.md'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
