"""The end-to-end demo on the synthetic corpus (``pwavenet demo``).

Stages: corpus -> features -> teacher -> teacher NLL -> student -> synthesis with both ->
evaluation and report. Each finished stage is recorded in ``OUT/demo.json`` with its wall
time; running the demo again skips recorded stages whose outputs are still there and resumes an
interrupted training run from its newest checkpoint. The configs ship inside the package in
``pwavenet/conf/demo`` (``teacher_<size>.yaml``, ``student_<size>.yaml``; ``--conf DIR`` gives
others).

What a CPU budget buys (docs/design.md, "What a CPU budget buys"): the teacher learns the
spectral envelope and timing in minutes, not periodicity, so the report states whether each
system is voiced where the reference is from the measured recall, and the targets below are
checked from the numbers.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .fileio import read_json, write_json

if TYPE_CHECKING:
    from .config import Config

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
CPU_RECALL_AIM = 0.5  # teacher voiced recall the cpu size aims at (half the reference's frames)
# The cpu-long size's bars besides pitch: student loudness within this many dB of the reference,
# student MR-STFT distance at most this multiple of the teacher's.
CPU_LONG = {"loudness_db": 1.0, "mrstft_ratio": 1.1}


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
    "cpu-long": DemoSize(48, 1.0, 4.0, "cpu", 4),
    "gpu": DemoSize(96, 1.0, 4.0, "cuda", 8),
}


def default_conf_dir() -> Path:
    """The demo configs shipped inside the package (``pwavenet/conf/demo``), found through
    :mod:`importlib.resources` so that an installed wheel runs the demo from any directory."""
    conf = resources.files("pwavenet") / "conf" / "demo"
    if not isinstance(conf, Path):  # e.g. a zipped install: the configs are not plain files
        raise ConfigError(f"{conf}: the packaged demo configs are not files; give --conf DIR")
    return conf


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
    with ``met`` ``None`` where the target does not apply to this size. The cpu-long size must
    be voiced like the reference with a student as loud as it and close to the teacher
    (:data:`CPU_LONG`); the cpu size aims at a teacher voiced in half the reference's frames."""
    from .eval.report import LOUDNESS_TOLERANCE_DB, PITCH_RECALL

    mean = result["mean"]
    student, teacher = mean["student"], mean["teacher"]
    ref_voiced = result["reference"]["voiced_fraction"]
    long = size == "cpu-long"
    loud_db = CPU_LONG["loudness_db"] if long else LOUDNESS_TOLERANCE_DB
    ratio = CPU_LONG["mrstft_ratio"] if long else 1.0
    rows: list[tuple[str, bool | None, str]] = [
        (
            f"teacher validation NLL <= {TEACHER_NLL_TARGET:g} bits/sample",
            nll["valid"] <= TEACHER_NLL_TARGET if size == "cpu" else None,
            f"{nll['valid']:.2f}",
        ),
        (
            f"student MR-STFT distance <= {ratio:g} x teacher's",
            student["mrstft"] <= ratio * teacher["mrstft"],
            f"{student['mrstft']:.2f} vs {teacher['mrstft']:.2f}",
        ),
        (
            f"student loudness within {loud_db:g} dB of the reference",
            abs(student["loudness_db"]) <= loud_db,
            f"{student['loudness_db']:+.1f} dB",
        ),
    ]
    for name in ("teacher", "student"):
        recall, rmse = mean[name]["voiced_recall"], mean[name]["f0_rmse_hz"]
        pitched = recall >= PITCH_RECALL and not math.isnan(rmse) and rmse < 10.0
        measured = (
            f"recall {recall:.2f} (reference voiced in {ref_voiced:.0%} of frames), "
            f"F0 RMSE {'n/a' if math.isnan(rmse) else f'{rmse:.1f} Hz'}"
        )
        applies = size in ("gpu", "cpu-long")
        rows.append(
            (
                f"{name} pitch: voiced recall >= {PITCH_RECALL} and F0 RMSE < 10 Hz "
                "(gpu and cpu-long sizes)",
                pitched if applies else None,
                measured,
            )
        )
        if name == "teacher":
            rows.append(
                (
                    f"teacher voiced recall >= {CPU_RECALL_AIM} (cpu size, an aim)",
                    recall >= CPU_RECALL_AIM if size == "cpu" else None,
                    f"{recall:.2f}",
                )
            )
    return rows


@dataclass(frozen=True)
class _Demo:
    """What every stage of one demo run needs: the output folder, the size and both configs."""

    out: Path
    size: str
    spec: DemoSize
    cfg_t: Config  # the teacher's (it also makes the features)
    cfg_s: Config  # the student's, distilled from OUT/teacher/export
    log: Log
    bar: Progress

    def run(self, kind: str) -> Path:
        """``OUT/teacher`` or ``OUT/student``: a training run folder."""
        return self.out / kind

    def samples(self) -> dict[str, Path]:
        return {kind: self.run(kind) / "samples" for kind in ("teacher", "student")}

    def refs(self) -> list[Path]:
        """The test split's source audio files (the synthesis inputs and the references)."""
        lines = (self.out / "dump" / "lists" / "test.txt").read_text().splitlines()
        return [Path(p) for p in lines]


def _prepare(
    out: str | Path, size: str, conf_dir: str | Path | None, log: Log, progress: Progress | None
) -> _Demo:
    """Check the size, the device and the configs before anything is written."""
    import torch

    from .config import load_config

    if size not in SIZES:
        raise ConfigError(f"demo size {size!r}: expected one of {', '.join(SIZES)}")
    spec = SIZES[size]
    if spec.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--size gpu needs a CUDA GPU (none is visible to torch); use --size cpu")
    conf_dir = Path(conf_dir) if conf_dir else default_conf_dir()
    confs = {k: conf_dir / f"{k}_{size}.yaml" for k in ("teacher", "student")}
    for path in confs.values():
        if not path.is_file():
            raise ConfigError(f"{path}: demo config not found (give --conf DIR)")
    out = Path(out)
    cfg_t = load_config(confs["teacher"])
    cfg_s = load_config(confs["student"], [f"distill.teacher={out / 'teacher' / 'export'}"])
    bar = progress or (lambda desc, unit: None)
    return _Demo(out, size, spec, cfg_t, cfg_s, log, bar)


def _corpus(demo: _Demo) -> None:
    from .data.make_corpus import make_corpus

    make_corpus(
        demo.out / "corpus",
        num_utterances=demo.spec.utterances,
        seed=0,
        sample_rate=demo.cfg_t.audio.sample_rate,
        min_seconds=demo.spec.min_seconds,
        max_seconds=demo.spec.max_seconds,
        progress=demo.bar("corpus", "utt"),
    )


def _features(demo: _Demo) -> None:
    from .data.preprocess import preprocess_corpus

    out, cfg = demo.out, demo.cfg_t
    bar = demo.bar("features", "file")
    preprocess_corpus(out / "corpus", out / "dump", cfg.audio, cfg.data, config=cfg, progress=bar)


def _train(demo: _Demo, kind: str) -> None:
    """Train (or resume) the teacher or the student into ``OUT/<kind>``."""
    from .train.distill import train_student
    from .train.teacher import train_teacher
    from .train.trainer import reset_accelerate

    fn, cfg = (train_teacher, demo.cfg_t) if kind == "teacher" else (train_student, demo.cfg_s)
    reset_accelerate()
    cpu = demo.spec.device == "cpu"
    fn(
        cfg,
        demo.out / "dump",
        demo.run(kind),
        resume=True,
        cpu=cpu,
        progress=demo.bar(kind, "step"),
    )


def _teacher_nll(demo: _Demo) -> None:
    """The teacher's held-out NLL of the valid and test splits into ``OUT/teacher/eval.json``."""
    import torch

    from .data.cache import FeatureCache
    from .models.export import load_teacher
    from .train.teacher import evaluate_teacher, mean_bits

    model = load_teacher(demo.run("teacher") / "export", demo.spec.device)
    cache = FeatureCache(demo.out / "dump", model.audio)
    with torch.no_grad():
        rows = {s: evaluate_teacher(model, cache, s) for s in ("valid", "test")}
    write_json(
        demo.run("teacher") / "eval.json",
        {s: {"mean_bits": mean_bits(r), "utterances": r} for s, r in rows.items()},
    )


def _synthesis(demo: _Demo) -> None:
    """The test utterances with the student (one parallel pass), then the teacher (cached)."""
    from .eval.scores import synthesis_speed
    from .models.export import load_vocoder
    from .synthesis import load_inputs, synthesize

    refs, samples = demo.refs(), demo.samples()
    for kind, batch in (("student", 1), ("teacher", demo.spec.teacher_batch)):
        model = load_vocoder(demo.run(kind) / "export", demo.spec.device, kind=kind)
        synthesize(
            model,
            load_inputs(refs, model.audio),
            samples[kind],
            batch_size=batch,
            seed=0,
            chunk_samples=5 * model.audio.sample_rate,
            progress=demo.bar(f"synthesize ({kind})", "chunk" if kind == "student" else "sample"),
        )
        speed = synthesis_speed(samples[kind])
        demo.log(f"   {kind}: {len(refs)} utterances, {speed['samples_per_s']:,.0f} samples/s")


def _evaluation(demo: _Demo) -> None:
    """Both systems and Griffin-Lim against the references, and the report, into ``OUT/eval``."""
    from .eval.evaluate import evaluate_systems, evaluation_measures
    from .eval.report import write_report
    from .models.export import load_student, load_teacher

    refs, samples = demo.refs(), demo.samples()
    teacher = load_teacher(demo.run("teacher") / "export", demo.spec.device)
    student = load_student(demo.run("student") / "export", demo.spec.device)
    result = evaluate_systems(
        refs,
        samples,
        teacher.audio,
        demo.out / "eval",
        teacher=teacher,
        student=student,
        progress=demo.bar("evaluate", "utt"),
        **evaluation_measures(),
    )
    write_report(
        result,
        refs,
        samples,
        teacher.audio,
        demo.out / "eval",
        runs={"teacher": demo.run("teacher"), "student": demo.run("student")},
        title=f"pwavenet demo ({demo.size})",
    )


def _stage_table(demo: _Demo) -> list[tuple[str, Path, Callable[[], None]]]:
    """Each stage (in :data:`DEMO_STAGES` order), the file whose presence marks it done, and
    what runs it."""
    out, teacher_run = demo.out, demo.run("teacher")
    return [
        ("corpus", out / "corpus" / "metadata.csv", lambda: _corpus(demo)),
        ("features", out / "dump" / "manifest.json", lambda: _features(demo)),
        ("teacher", teacher_run / "export", lambda: _train(demo, "teacher")),
        ("teacher-nll", teacher_run / "eval.json", lambda: _teacher_nll(demo)),
        ("student", demo.run("student") / "export", lambda: _train(demo, "student")),
        ("synthesis", demo.samples()["teacher"] / "synthesis.json", lambda: _synthesis(demo)),
        ("evaluation", out / "eval" / "report.html", lambda: _evaluation(demo)),
    ]


def _finish(demo: _Demo, stages: _Stages, wall: float) -> dict[str, Any]:
    """Add the totals, the teacher's NLL, the summary and the targets to ``OUT/demo.json``."""
    from .eval.evaluate import load_metrics
    from .eval.report import summarize

    out = demo.out
    result = load_metrics(out / "eval" / "metrics.json")
    nll_record = json.loads((demo.run("teacher") / "eval.json").read_text(encoding="utf-8"))
    nll = {s: nll_record[s]["mean_bits"] for s in ("valid", "test")}
    record = stages.record
    record["seconds_this_run"] = time.perf_counter() - wall
    record["seconds_all_stages"] = sum(record["stages"].values())
    record["teacher_nll_bits"] = nll
    record["summary"] = summarize(result)
    record["targets"] = [
        {"target": t, "met": met, "measured": m} for t, met, m in targets(demo.size, nll, result)
    ]
    record["report"] = str(out / "eval" / "report.html")
    write_json(stages.path, record)
    return record


def run_demo(
    out: str | Path,
    size: str = "cpu",
    *,
    conf_dir: str | Path | None = None,
    log: Log = print,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run (or resume) the demo into ``out``; returns ``OUT/demo.json``'s record with the stage
    times, the evaluation result and the targets. ``conf_dir`` holds ``teacher_<size>.yaml``
    and ``student_<size>.yaml`` (default: :func:`default_conf_dir`)."""
    demo = _prepare(out, size, conf_dir, log, progress)
    demo.out.mkdir(parents=True, exist_ok=True)
    stages = _Stages(demo.out, size, log)
    wall = time.perf_counter()
    for name, done, fn in _stage_table(demo):
        stages.run(name, done, fn)
    return _finish(demo, stages, wall)


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
