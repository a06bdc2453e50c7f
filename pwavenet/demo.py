"""The end-to-end demo on the synthetic corpus (``pwavenet demo``).

Stages: corpus -> features -> teacher -> teacher NLL -> student -> synthesis with both ->
evaluation and report. Each finished stage is recorded in ``OUT/demo.json`` with its wall
time; running the demo again skips recorded stages whose outputs are still there and resumes an
interrupted training run from its newest checkpoint. The configs live in ``recipes/demo/conf``
(``teacher_<size>.yaml``, ``student_<size>.yaml``).

What a CPU budget buys (SPEC section 8): the teacher learns the spectral envelope and timing in
minutes, not periodicity, so the report states whether each system is voiced where the
reference is from the measured recall, and the targets below are checked from the numbers.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .fileio import read_json, write_json

__all__ = [
    "DEMO_STAGES",
    "SIZES",
    "DemoSize",
    "check_demo",
    "default_conf_dir",
    "run_demo",
    "targets",
]

DEMO_FORMAT = "pwavenet-demo/1"
DEMO_STAGES = (
    "corpus",
    "features",
    "teacher",
    "teacher-nll",
    "student",
    "synthesis",
    "evaluation",
)
TEACHER_NLL_TARGET = 11.0  # bits/sample on the validation split (issue target, cpu size)


@dataclass(frozen=True)
class DemoSize:
    """The corpus and configs of one demo size."""

    utterances: int
    min_seconds: float
    max_seconds: float
    device: str  # "cpu" or "cuda"
    teacher_batch: int  # utterances the teacher generates together


SIZES = {
    "quick": DemoSize(10, 0.5, 1.0, "cpu", 2),
    "cpu": DemoSize(48, 1.0, 4.0, "cpu", 4),
    "gpu": DemoSize(400, 1.0, 4.0, "cuda", 8),
}


def default_conf_dir() -> Path:
    """``recipes/demo/conf`` of the source tree this package runs from."""
    return Path(__file__).resolve().parent.parent / "recipes" / "demo" / "conf"


Log = Callable[[str], None]
Progress = Callable[[str, str], Callable[[Iterable[Any]], Iterable[Any]]]


class _Stages:
    """Runs stages once: ``OUT/demo.json`` records each finished stage and its wall time."""

    def __init__(self, out: Path, size: str, log: Log) -> None:
        self.path, self.log = out / "demo.json", log
        if self.path.is_file():
            self.record = read_json(self.path, DEMO_FORMAT, ConfigError, "demo record")
            if self.record["size"] != size:
                raise ConfigError(
                    f"{out}: holds a demo of size {self.record['size']!r}, not {size!r}; use "
                    "another --out or delete it"
                )
        else:
            self.record = {"format": DEMO_FORMAT, "size": size, "stages": {}}
        self.reused: list[str] = []

    def run(self, name: str, done: Path, fn: Callable[[], Any]) -> None:
        index = DEMO_STAGES.index(name) + 1
        header = f"== {index}/{len(DEMO_STAGES)} {name}"
        if name in self.record["stages"] and done.exists():
            self.log(f"{header}: done before ({self.record['stages'][name]:.1f} s), reused")
            self.reused.append(name)
            return
        self.log(header)
        start = time.perf_counter()
        fn()
        self.record["stages"][name] = time.perf_counter() - start
        write_json(self.path, self.record)
        self.log(f"{header}: {self.record['stages'][name]:.1f} s")


def targets(
    size: str, nll: dict[str, float], result: dict[str, Any]
) -> list[tuple[str, bool | None, str]]:
    """The issue's demo targets checked against the measured numbers: ``(target, met, measured)``
    with ``met`` ``None`` where the target does not apply to this size."""
    from .eval.report import LOUDNESS_TOLERANCE_DB, PITCH_RECALL

    mean = result["mean"]
    student, teacher = mean["student"], mean["teacher"]
    ref_voiced = result["reference"]["voiced_fraction"]
    rows: list[tuple[str, bool | None, str]] = [
        (
            f"teacher validation NLL <= {TEACHER_NLL_TARGET:g} bits/sample",
            nll["valid"] <= TEACHER_NLL_TARGET if size == "cpu" else None,
            f"{nll['valid']:.2f}",
        ),
        (
            "student MR-STFT distance <= teacher's",
            student["mrstft"] <= teacher["mrstft"],
            f"{student['mrstft']:.2f} vs {teacher['mrstft']:.2f}",
        ),
        (
            f"student loudness within {LOUDNESS_TOLERANCE_DB:g} dB of the reference",
            abs(student["loudness_db"]) <= LOUDNESS_TOLERANCE_DB,
            f"{student['loudness_db']:+.1f} dB",
        ),
    ]
    for name in ("teacher", "student"):
        recall, rmse = mean[name]["voiced_recall"], mean[name]["f0_rmse_hz"]
        met = (
            recall >= PITCH_RECALL and not math.isnan(rmse) and rmse < 10.0
            if size == "gpu"
            else None
        )
        rows.append(
            (
                f"{name} pitch: voiced recall >= {PITCH_RECALL} and F0 RMSE < 10 Hz (gpu size)",
                met,
                f"recall {recall:.2f} (reference voiced in {ref_voiced:.0%} of frames), "
                f"F0 RMSE {'n/a' if math.isnan(rmse) else f'{rmse:.1f} Hz'}",
            )
        )
    return rows


def run_demo(
    out: str | Path,
    size: str = "cpu",
    *,
    conf_dir: str | Path | None = None,
    log: Log = print,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run (or resume) the demo into ``out``; returns ``OUT/demo.json``'s record with the stage
    times, the evaluation result and the targets."""
    import torch

    from .config import load_config, save_config
    from .data.cache import FeatureCache
    from .data.make_corpus import make_corpus
    from .data.preprocess import preprocess_corpus
    from .eval.evaluation import evaluate_systems, load_metrics, synthesis_speed
    from .eval.report import summarize, write_report
    from .models.export import load_student, load_teacher
    from .synthesis import load_inputs, synthesize
    from .train.distill import train_student
    from .train.teacher import evaluate_teacher, mean_bits, train_teacher
    from .train.trainer import reset_accelerate

    if size not in SIZES:
        raise ConfigError(f"demo size {size!r}: expected one of {', '.join(SIZES)}")
    spec = SIZES[size]
    if spec.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--size gpu needs a CUDA GPU (none is visible to torch); use --size cpu")
    cpu = spec.device == "cpu"
    conf_dir = Path(conf_dir) if conf_dir else default_conf_dir()
    confs = {k: conf_dir / f"{k}_{size}.yaml" for k in ("teacher", "student")}
    for path in confs.values():
        if not path.is_file():
            raise ConfigError(f"{path}: demo config not found (give --conf DIR)")
    out = Path(out)
    teacher_run, student_run = out / "teacher", out / "student"
    cfg_t = load_config(confs["teacher"])
    cfg_s = load_config(confs["student"], [f"distill.teacher={teacher_run / 'export'}"])
    out.mkdir(parents=True, exist_ok=True)
    stages = _Stages(out, size, log)
    bar = progress or (lambda desc, unit: None)
    wall = time.perf_counter()

    stages.run(
        "corpus",
        out / "corpus" / "metadata.csv",
        lambda: make_corpus(
            out / "corpus",
            num_utterances=spec.utterances,
            seed=0,
            sample_rate=cfg_t.audio.sample_rate,
            min_seconds=spec.min_seconds,
            max_seconds=spec.max_seconds,
            progress=bar("corpus", "utt"),
        ),
    )

    def features() -> None:
        preprocess_corpus(
            out / "corpus", out / "dump", cfg_t.audio, cfg_t.data, progress=bar("features", "file")
        )
        save_config(cfg_t, out / "dump" / "config.yaml")

    stages.run("features", out / "dump" / "manifest.json", features)

    def train(fn: Callable[..., Path], cfg: Any, run: Path, name: str) -> None:
        reset_accelerate()
        fn(cfg, out / "dump", run, resume=True, cpu=cpu, progress=bar(name, "step"))

    stages.run(
        "teacher",
        teacher_run / "export",
        lambda: train(train_teacher, cfg_t, teacher_run, "teacher"),
    )

    def teacher_nll() -> None:
        model = load_teacher(teacher_run / "export", spec.device)
        cache = FeatureCache(out / "dump", model.audio)
        with torch.no_grad():
            rows = {s: evaluate_teacher(model, cache, s) for s in ("valid", "test")}
        write_json(
            teacher_run / "eval.json",
            {s: {"mean_bits": mean_bits(r), "utterances": r} for s, r in rows.items()},
        )

    stages.run("teacher-nll", teacher_run / "eval.json", teacher_nll)
    stages.run(
        "student",
        student_run / "export",
        lambda: train(train_student, cfg_s, student_run, "student"),
    )

    refs = [Path(p) for p in (out / "dump" / "lists" / "test.txt").read_text().splitlines()]
    samples = {"teacher": teacher_run / "samples", "student": student_run / "samples"}

    def synthesis() -> None:
        for kind, loader, batch in (
            ("student", load_student, 1),
            ("teacher", load_teacher, spec.teacher_batch),
        ):
            model = loader(out / kind / "export", spec.device)
            synthesize(
                model,
                load_inputs(refs, model.audio),
                samples[kind],
                batch_size=batch,
                seed=0,
                chunk_samples=5 * model.audio.sample_rate,
                progress=bar(f"synthesize ({kind})", "batch" if kind == "student" else "sample"),
            )
            speed = synthesis_speed(samples[kind])
            log(f"   {kind}: {len(refs)} utterances, {speed['samples_per_s']:,.0f} samples/s")

    stages.run("synthesis", samples["teacher"] / "synthesis.json", synthesis)

    def evaluation() -> None:
        teacher = load_teacher(teacher_run / "export", spec.device)
        student = load_student(student_run / "export", spec.device)
        result = evaluate_systems(
            refs,
            samples,
            teacher.audio,
            out / "eval",
            teacher=teacher,
            student=student,
            progress=bar("evaluate", "utt"),
        )
        write_report(
            result,
            refs,
            samples,
            teacher.audio,
            out / "eval",
            runs={"teacher": teacher_run, "student": student_run},
            title=f"pwavenet demo ({size})",
        )

    stages.run("evaluation", out / "eval" / "report.html", evaluation)

    result = load_metrics(out / "eval" / "metrics.json")
    nll_record = json.loads((teacher_run / "eval.json").read_text(encoding="utf-8"))
    nll = {s: nll_record[s]["mean_bits"] for s in ("valid", "test")}
    record = stages.record
    record["seconds_this_run"] = time.perf_counter() - wall
    record["seconds_all_stages"] = sum(record["stages"].values())
    record["teacher_nll_bits"] = nll
    record["summary"] = summarize(result)
    record["targets"] = [
        {"target": t, "met": met, "measured": m} for t, met, m in targets(size, nll, result)
    ]
    record["report"] = str(out / "eval" / "report.html")
    write_json(stages.path, record)
    return record


def check_demo(out: str | Path) -> list[str]:
    """Problems with a finished demo folder (empty when complete): every stage recorded with a
    finite time, the teacher's NLL finite, and the report complete (:func:`check_report`)."""
    from .eval.report import check_report

    out = Path(out)
    path = out / "demo.json"
    try:
        record = read_json(path, DEMO_FORMAT, ConfigError, "demo record")
    except ConfigError as exc:
        return [str(exc)]
    problems = [f"{path}: stage {s} not finished" for s in DEMO_STAGES if s not in record["stages"]]
    numbers = [*record["stages"].values(), *record.get("teacher_nll_bits", {}).values()]
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in numbers):
        problems.append(f"{path}: a stage time or the teacher NLL is not a finite number")
    if "targets" not in record:
        problems.append(f"{path}: no targets recorded")
    return problems + check_report(out / "eval")
