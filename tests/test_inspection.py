"""Inspection tools: describe exports and runs, read training logs, plot curves."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from conftest import reset_accelerate
from test_distillation import STUDENT
from training_setup import make_dump, tiny_config

from pwavenet.errors import DataError
from pwavenet.eval.curves import plot_curves, read_log
from pwavenet.eval.inspection import describe, format_description
from pwavenet.models.export import WEIGHTS, ExportError, load_student, load_teacher
from pwavenet.train.distill import file_sha256, train_student
from pwavenet.train.teacher import train_teacher

TOOLS = Path(__file__).resolve().parents[1] / "tools"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny teacher and a student distilled from it, 2 steps each (validated at step 2)."""
    root = tmp_path_factory.mktemp("inspection")
    dump = make_dump(root, utterances=8)
    short = ["train.max_steps=2", "train.log_every=1", "train.valid_every=2"]
    reset_accelerate()
    teacher = train_teacher(tiny_config(*short), dump, root / "teacher", cpu=True)
    reset_accelerate()
    cfg = tiny_config(f"distill.teacher={teacher}", *STUDENT, *short)
    train_student(cfg, dump, root / "student", cpu=True)
    reset_accelerate()
    return root


def numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_teacher_export_counts_and_receptive_field(runs):
    d = describe(runs / "teacher" / "export")
    model = load_teacher(runs / "teacher" / "export")
    assert d["kind"] == "teacher" and d["steps"] == 2 and d["source"] == "export"
    assert d["parameters"]["total"] == numel(model)
    assert sum(d["parameters"]["modules"].values()) == numel(model)
    assert d["parameters"]["modules"]["blocks"] == numel(model.blocks)
    assert d["receptive_field"]["samples"] == model.receptive_field
    assert d["receptive_field"]["ms"] == pytest.approx(1000 * model.receptive_field / 8000)
    assert set(d["config"]) == {"audio", "teacher"} and d["config"]["teacher"]["layers"] == 6
    assert "teacher" not in d


def test_student_export_flows_and_teacher_record(runs):
    d = describe(runs / "student")  # a run folder: described through its export
    model = load_student(runs / "student" / "export")
    assert d["kind"] == "student" and d["run"] == str(runs / "student")
    assert d["parameters"]["total"] == numel(model)
    field = d["receptive_field"]
    assert field["samples"] == model.lookback
    assert [f["samples"] for f in field["flows"]] == [f.receptive_field for f in model.flows]
    assert [f["layers"] for f in field["flows"]] == [4, 4]
    teacher = runs / "teacher" / "export"
    record = d["teacher"]
    assert record["path"] == str(teacher.resolve()) and record["status"] == "matches"
    assert record["sha256"] == record["current_sha256"] == file_sha256(teacher / WEIGHTS)
    text = format_description(d)
    assert "student" in text and f"{d['parameters']['total']:,}" in text and "match" in text


def test_altered_or_missing_teacher_is_reported(runs, tmp_path):
    teacher = shutil.copytree(runs / "teacher" / "export", tmp_path / "teacher")
    student = shutil.copytree(runs / "student" / "export", tmp_path / "student")
    meta = json.loads((student / "model.json").read_text())
    meta["extra"]["teacher"] = str(teacher)
    (student / "model.json").write_text(json.dumps(meta))
    assert describe(student)["teacher"]["status"] == "matches"
    with open(teacher / WEIGHTS, "ab") as f:
        f.write(b"\0")
    d = describe(student)
    assert d["teacher"]["status"] == "differs"
    assert d["teacher"]["current_sha256"] != d["teacher"]["sha256"]
    assert "DIFFER" in format_description(d)
    (teacher / WEIGHTS).unlink()
    assert describe(student)["teacher"]["status"] == "missing"


def test_unfinished_run_is_described_from_its_checkpoint(runs, tmp_path):
    for kind in ("teacher", "student"):
        run = shutil.copytree(runs / kind, tmp_path / kind)
        shutil.rmtree(run / "export")
        d = describe(run)
        done = describe(runs / kind / "export")
        assert d["kind"] == kind and d["source"].startswith("checkpoint step-00000002")
        assert d["steps"] == 2
        assert d["parameters"] == done["parameters"]
        assert d["receptive_field"] == done["receptive_field"]
        format_description(d)


def test_folder_without_export_is_a_one_line_error(tmp_path):
    with pytest.raises(ExportError, match="no pwavenet export here") as err:
        describe(tmp_path)
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)


def test_read_log_tolerates_interruptions(tmp_path):
    lines = [
        {"step": 2, "nll/bits": 14.0, "lr": 0.001},
        {"step": 4, "nll/bits": 13.0, "lr": 0.001},
        {"step": 4, "valid/nll/bits": 13.5, "note": "text"},
    ]
    text = "".join(json.dumps(row) + "\n" for row in lines)
    (tmp_path / "log.jsonl").write_text(text + '{"step": 6, "nll/bi')  # killed mid-write
    log = read_log(tmp_path)
    assert log["nll/bits"] == [(2, 14.0), (4, 13.0)]
    assert log["valid/nll/bits"] == [(4, 13.5)] and "note" not in log
    # Resumed from step 2: the first new line completes the damaged one (still damaged, now in
    # the middle), and steps 4 and 6 are logged again; the newest values count.
    resumed = [
        {"step": 4, "nll/bits": 12.9},
        {"step": 4, "nll/bits": 12.5},
        {"step": 6, "nll/bits": 12.0},
    ]
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write("".join(json.dumps(row) + "\n" for row in resumed))
    assert read_log(tmp_path)["nll/bits"] == [(2, 14.0), (4, 12.5), (6, 12.0)]


def test_read_log_missing_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match="no training log") as err:
        read_log(tmp_path)
    assert str(tmp_path / "log.jsonl") in str(err.value)


def test_plot_curves_writes_a_png(runs, tmp_path):
    out = plot_curves(
        {"teacher": runs / "teacher", "student": runs / "student"}, tmp_path / "c.png"
    )
    assert out.read_bytes()[:8] == PNG
    assert [p.name for p in tmp_path.iterdir()] == ["c.png"]  # no temporary file left
    with pytest.raises(DataError, match="no run logged 'kl/nothing'"):
        plot_curves({"teacher": runs / "teacher"}, tmp_path / "d.png", ["kl/nothing"])


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tools(runs, tmp_path, capsys):
    inspect, plot = load_tool("inspect_export"), load_tool("plot_curves")
    assert inspect.main([str(runs / "teacher"), str(runs / "student" / "export")]) == 0
    out = capsys.readouterr().out
    assert "teacher (export" in out and "student (export" in out and "receptive field" in out
    assert inspect.main([str(tmp_path)]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    png = tmp_path / "curves.png"
    assert plot.main([f"t={runs / 'teacher'}", "--out", str(png), "--keys", "nll/bits"]) == 0
    assert png.read_bytes()[:8] == PNG
    assert plot.main([str(tmp_path / "none"), "--out", str(png)]) == 1
