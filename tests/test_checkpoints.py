"""A run survives its accidents: damaged checkpoints, a full disk, bursts of non-finite losses;
and any checkpoint can be exported while the run trains (``pwavenet export``)."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator
from conftest import reset_accelerate
from test_distillation import STUDENT
from training_setup import TINY, make_dump, tiny_config

import pwavenet.models.export as export_module
from pwavenet import cli
from pwavenet.models.export import WEIGHTS, load_student, load_teacher
from pwavenet.train.checkpoints import checkpoint_problem, latest_checkpoint
from pwavenet.train.distill import file_sha256
from pwavenet.train.exports import ExportRecipe
from pwavenet.train.teacher import TeacherTask, build_teacher, make_teacher_trainer, teacher_args

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")

FAST = ["train.save_every=2", "train.monitor_seconds=0"]  # no pitch monitor: fast steps
ENOSPC = os.strerror(errno.ENOSPC)  # "No space left on device"


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A teacher run stopped at step 4 with checkpoints at steps 2 and 4 and ``export/``, and
    the EMA and raw weights its trainer held at step 2."""
    root = tmp_path_factory.mktemp("checkpoints")
    dump = make_dump(root)
    cfg = tiny_config("train.max_steps=4", *FAST)
    reset_accelerate()
    trainer = make_teacher_trainer(cfg, dump, root / "run", cpu=True)
    trainer.recipe = ExportRecipe("teacher", teacher_args(cfg), cfg)
    trainer.fit(until=2)
    at_2 = {
        "ema": {k: v.clone() for k, v in trainer.averaged_model().state_dict().items()},
        "raw": {k: v.clone() for k, v in trainer.unwrapped.state_dict().items()},
    }
    trainer.fit()
    reset_accelerate()
    return SimpleNamespace(root=root, dump=dump, run=root / "run", cfg=cfg, at_2=at_2)


def copy_run(teacher_run, tmp_path: Path) -> Path:
    return Path(shutil.copytree(teacher_run.run, tmp_path / "run"))


def train_args(teacher_run, run: Path, *extra: str) -> list[str]:
    common = ["--cpu", "--dump", str(teacher_run.dump), "--out", str(run)]
    return ["train-teacher", *common, *TINY, *FAST, *extra]


def truncate(path: Path) -> int:
    """Cut a file to half its size; returns the new size."""
    size = path.stat().st_size // 2
    with open(path, "r+b") as f:
        f.truncate(size)
    return size


def error_lines(capsys) -> list[str]:
    """The CLI's error lines on stderr (logging and libraries may add other lines)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("pwavenet: error:")]


def export_steps(path: Path) -> int:
    return json.loads((path / "model.json").read_text())["extra"]["steps"]


def test_damaged_newest_checkpoint_is_skipped_at_every_resume(teacher_run, tmp_path, caplog):
    run = copy_run(teacher_run, tmp_path)
    damaged = run / "checkpoints" / "step-00000004"
    size = truncate(damaged / "model.safetensors")
    keep = ["train.save_every=3", "train.keep_checkpoints=2"]
    caplog.set_level(logging.INFO, logger="pwavenet")
    for stop, resumed_from in ((3, "step-00000002"), (6, "step-00000003")):
        caplog.clear()
        reset_accelerate()
        assert cli.main(train_args(teacher_run, run, f"train.max_steps={stop}", *keep)) == 0
        messages = [r.getMessage() for r in caplog.records]
        warned = [m for m in messages if "damaged checkpoint skipped" in m]
        assert len(warned) == 1 and str(damaged) in warned[0], messages
        assert "model.safetensors" in warned[0]
        assert any(f"resumed from {run / 'checkpoints' / resumed_from}" in m for m in messages)
        assert export_steps(run / "export") == stop
    # The damaged checkpoint is left as it was and never counted among the newest two: step 2
    # was pruned for step 6, and step 3 kept.
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step-00000003", "step-00000004", "step-00000006"]
    assert (damaged / "model.safetensors").stat().st_size == size
    assert latest_checkpoint(run).name == "step-00000006"


def test_no_intact_checkpoint_is_a_one_line_error(teacher_run, tmp_path, capsys):
    run = copy_run(teacher_run, tmp_path)
    truncate(run / "checkpoints" / "step-00000002" / "optimizer.bin")
    truncate(run / "checkpoints" / "step-00000004" / "ema.safetensors")
    assert cli.main(train_args(teacher_run, run, "train.max_steps=6")) == 1
    [line] = error_lines(capsys)
    assert "checkpoints: no intact checkpoint to resume from" in line
    assert "step-00000004: ema.safetensors" in line and "step-00000002: optimizer.bin" in line
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step-00000002", "step-00000004"]  # nothing deleted


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(
    teacher_run, tmp_path, capsys, monkeypatch
):
    run = copy_run(teacher_run, tmp_path)
    real = Accelerator.save_state

    def full_disk(self, output_dir=None, **kwargs):
        real(self, output_dir, **kwargs)  # the disk fills up while the optimizer is written
        truncate(Path(output_dir) / "optimizer.bin")
        raise OSError(errno.ENOSPC, ENOSPC, str(Path(output_dir) / "optimizer.bin"))

    monkeypatch.setattr(Accelerator, "save_state", full_disk)
    assert cli.main(train_args(teacher_run, run, "train.max_steps=6")) == 1
    [line] = error_lines(capsys)
    assert (
        f"{run / 'checkpoints' / 'step-00000006'}: cannot write the checkpoint ({ENOSPC})" in line
    )
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step-00000002", "step-00000004"]  # no partial .tmp-step-00000006 left
    assert checkpoint_problem(run / "checkpoints" / "step-00000004") is None
    assert export_steps(run / "export") == 4
    monkeypatch.undo()
    reset_accelerate()
    assert cli.main(train_args(teacher_run, run, "train.max_steps=6")) == 0  # resumes from 4
    assert export_steps(run / "export") == 6


def test_full_disk_while_exporting_keeps_the_previous_export(
    teacher_run, tmp_path, capsys, monkeypatch
):
    run = copy_run(teacher_run, tmp_path)
    real = export_module.save_file

    def full_disk(tensors, filename, metadata=None):
        real(tensors, filename, metadata)
        truncate(Path(filename))
        raise OSError(errno.ENOSPC, ENOSPC)

    monkeypatch.setattr(export_module, "save_file", full_disk)
    assert cli.main(train_args(teacher_run, run, "train.max_steps=6")) == 1
    [line] = error_lines(capsys)
    assert f"{run / 'export'}: cannot write the export ({ENOSPC})" in line
    assert load_teacher(run / "export").provenance["steps"] == 4  # the previous one, whole
    assert checkpoint_problem(run / "checkpoints" / "step-00000006") is None  # written before
    # `pwavenet export` on the same full disk: one line, nothing left behind
    assert cli.main(["export", str(run), "--step", "6"]) == 1
    [line] = error_lines(capsys)
    assert f"{run / 'export-step-6'}: cannot write the export ({ENOSPC})" in line
    assert sorted(p.name for p in run.iterdir() if "export" in p.name) == ["export"]
    monkeypatch.undo()
    assert cli.main(["export", str(run)]) == 0
    assert load_teacher(run / "export-step-6").provenance["steps"] == 6


def test_export_of_a_checkpoint_is_the_ema_model_at_that_step(teacher_run, tmp_path, capsys):
    run = copy_run(teacher_run, tmp_path)
    assert cli.main(["export", str(run), "--step", "2"]) == 0
    assert f"export: {run / 'export-step-2'}" in capsys.readouterr().out
    exported = load_teacher(run / "export-step-2")
    assert exported.provenance["steps"] == 2
    ema, raw = build_teacher(teacher_run.cfg).eval(), build_teacher(teacher_run.cfg).eval()
    ema.load_state_dict(teacher_run.at_2["ema"])
    raw.load_state_dict(teacher_run.at_2["raw"])
    g = torch.Generator().manual_seed(0)
    audio, mel = torch.rand(1, 1, 640, generator=g) - 0.5, torch.randn(1, 20, 10, generator=g)
    with torch.no_grad():
        out = exported(audio, mel)
        torch.testing.assert_close(out, ema(audio, mel), atol=0, rtol=0)
        assert not torch.allclose(out, raw(audio, mel))  # the EMA weights, not the raw ones
    # By default the newest intact checkpoint: the end of the run, which training exported too.
    assert cli.main(["export", str(run), "--out", str(tmp_path / "newest")]) == 0
    newest, final = load_teacher(tmp_path / "newest"), load_teacher(run / "export")
    assert newest.provenance["steps"] == final.provenance["steps"] == 4
    for (name, a), b in zip(newest.state_dict().items(), final.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_export_refuses_a_missing_or_damaged_checkpoint(teacher_run, tmp_path, capsys):
    run = copy_run(teacher_run, tmp_path)
    truncate(run / "checkpoints" / "step-00000004" / "ema.safetensors")
    cases = [
        (["--step", "3"], "step-00000003: no such checkpoint (steps kept: 2, 4)"),
        (["--step", "4"], "step-00000004: damaged checkpoint (ema.safetensors: "),
    ]
    for args, expected in cases:
        assert cli.main(["export", str(run), *args]) == 1
        [line] = error_lines(capsys)
        assert expected in line, line
    assert cli.main(["export", str(tmp_path)]) == 1
    assert "not a training run with checkpoints" in error_lines(capsys)[0]
    assert not any(p.name.startswith(("export-", ".export-")) for p in run.iterdir())
    assert cli.main(["export", str(run)]) == 0  # the newest intact one: step 2
    assert load_teacher(run / "export-step-2").provenance["steps"] == 2


def test_non_finite_burst_after_checkpoints_stops_and_resumes(
    teacher_run, tmp_path, capsys, caplog, monkeypatch
):
    run = tmp_path / "run"
    real = TeacherTask.loss
    calls = []
    poisoned = {3, 4, 7, 8, 9}  # loss calls: 2 in a row (skipped), then 3 in a row (a stop)

    def bursts(self, model, batch):
        calls.append(None)
        loss, metrics = real(self, model, batch)
        return (loss * float("nan") if len(calls) in poisoned else loss), metrics

    monkeypatch.setattr(TeacherTask, "loss", bursts)
    args = train_args(teacher_run, run, "train.max_steps=8", "train.max_nonfinite=3")
    assert cli.main(args) == 1
    [line] = error_lines(capsys)
    assert "3 non-finite losses or gradients in a row at step 4" in line
    assert f"the last good checkpoint is {run / 'checkpoints' / 'step-00000004'}" in line
    skipped = [r for r in caplog.records if "non-finite loss at step" in r.getMessage()]
    assert len(skipped) == 5
    # The run stopped early, yet its export is that of its last checkpoint.
    assert load_teacher(run / "export").provenance["steps"] == 4
    monkeypatch.undo()
    reset_accelerate()
    assert cli.main(args) == 0
    assert export_steps(run / "export") == 8
    record = json.loads((run / "checkpoints" / "step-00000008" / "trainer.json").read_text())
    assert record["nonfinite_total"] == 2  # the burst before step 4's checkpoint was counted


def test_student_checkpoint_export_records_its_teacher(teacher_run, tmp_path, capsys):
    teacher = teacher_run.run / "export"
    run = tmp_path / "student"
    common = ["--cpu", "--dump", str(teacher_run.dump), "--out", str(run), *TINY, *STUDENT]
    extra = ["train.max_steps=2", "train.save_every=1", "train.monitor_seconds=0"]
    assert cli.main(["distill", *common, "--teacher", str(teacher), *extra]) == 0
    reset_accelerate()
    assert cli.main(["export", str(run), "--step", "1"]) == 0
    assert cli.main(["export", str(run), "--step", "2"]) == 0
    final, one, two = (load_student(run / n) for n in ("export", "export-step-1", "export-step-2"))
    for model in (final, one, two):
        assert model.provenance["teacher"] == str(teacher.resolve())
        assert model.provenance["teacher_sha256"] == file_sha256(teacher / WEIGHTS)
    assert (one.provenance["steps"], two.provenance["steps"]) == (1, 2)
    for (name, a), b in zip(two.state_dict().items(), final.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    moved = zip(one.parameters(), two.parameters(), strict=True)
    assert any(not torch.equal(a, b) for a, b in moved)
