"""The demo command: every stage end to end at a tiny size, its report complete, stages reused
on a second run, an interrupted run resumed, and a clear error for a mismatched folder."""

from __future__ import annotations

import json
import math
import re
import shutil

import pytest

from pwavenet import cli
from pwavenet.config import load_config
from pwavenet.demo import DEMO_STAGES, SIZES, check_demo, default_conf_dir, targets

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")

COMMON = """
audio: {sample_rate: 16000, fmax: 8000.0}
data: {segment_length: 2048, batch_size: 2, valid_utterances: 2, test_utterances: 2}
optim: {lr: 2.0e-3, warmup_steps: 1, ema_decay: 0.5}
train: {max_steps: 4, log_every: 2, valid_every: 2, save_every: 2}
"""
TEACHER = (
    COMMON
    + """
teacher: {layers: 2, cycles: 1, residual_channels: 8, gate_channels: 16, skip_channels: 8,
          mixtures: 2}
"""
)
STUDENT = (
    COMMON
    + """
student: {flow_layers: [1, 1], layers_per_cycle: 1, residual_channels: 4, gate_channels: 8}
distill: {samples: 2, loss_weights: {kl: 1.0, power: 1.0, loudness: 1.0}, power_loss: logpower}
"""
)


@pytest.fixture(scope="module")
def conf(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_conf")
    (root / "teacher_quick.yaml").write_text(TEACHER)
    (root / "student_quick.yaml").write_text(STUDENT)
    return root


@pytest.fixture(scope="module")
def demo(tmp_path_factory, conf):
    out = tmp_path_factory.mktemp("demo") / "out"
    args = ["demo", "--quick", "--out", str(out), "--conf", str(conf)]
    from conftest import reset_accelerate

    reset_accelerate()
    assert cli.main(args) == 0
    return out, args


def test_the_demo_runs_every_stage_and_writes_a_complete_report(demo, capsys):
    out, _ = demo
    assert check_demo(out) == []
    record = json.loads((out / "demo.json").read_text())
    assert list(record["stages"]) == list(DEMO_STAGES)
    assert {t["met"] for t in record["targets"]} <= {True, False, None}
    assert (out / "student" / "samples" / "synthesis.json").is_file()
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert set(metrics["mean"]) == {"student", "teacher", "griffin-lim"}
    assert set(metrics["models"]) == {"teacher_nll_bits", "student_kl_nats"}
    page = (out / "eval" / "report.html").read_text()
    assert "curves-teacher.png" in page and "curves-student.png" in page and "<audio" in page
    for sentence in record["summary"]:  # the report's words are on the page
        assert sentence.replace("'", "&#x27;") in page


def test_a_second_run_reuses_every_stage(demo, capsys):
    out, args = demo
    before = json.loads((out / "demo.json").read_text())["stages"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert len(re.findall(r"reused", printed)) == len(DEMO_STAGES)
    assert json.loads((out / "demo.json").read_text())["stages"] == before


def test_an_interrupted_run_resumes_from_the_unfinished_stage(demo, capsys):
    out, args = demo
    record = json.loads((out / "demo.json").read_text())
    for stage in ("student", "synthesis", "evaluation"):  # as if killed during distillation
        del record["stages"][stage]
    (out / "demo.json").write_text(json.dumps(record))
    shutil.rmtree(out / "student" / "export")
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert re.findall(r"== \d/7 (\S+): done before", printed) == list(DEMO_STAGES[:4])
    assert check_demo(out) == []


def test_a_folder_of_another_size_is_refused(demo, capsys):
    out, _ = demo
    assert cli.main(["demo", "--size", "cpu", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a demo of size 'quick', not 'cpu'" in err


def test_check_finds_missing_figures_and_non_finite_numbers(demo, tmp_path, capsys):
    out, _ = demo
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    next((copy / "eval" / "figures").glob("mel-*.png")).unlink()
    metrics = copy / "eval" / "metrics.json"
    metrics.write_text(metrics.read_text().replace('"mrstft": ', '"mrstft": NaN, "x": ', 1))
    assert cli.main(["demo", "--out", str(copy), "--check"]) == 1
    err = capsys.readouterr().err
    assert "non-finite number NaN" in err
    assert "missing or not a PNG" in err
    assert cli.main(["demo", "--out", str(tmp_path / "none"), "--check"]) == 1


def test_missing_configs_are_one_line_errors(tmp_path, capsys):
    assert cli.main(["demo", "--quick", "--out", str(tmp_path / "o"), "--conf", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "teacher_quick.yaml: demo config not found" in err


def test_the_gpu_size_without_a_gpu_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.main(["demo", "--size", "gpu", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--size gpu needs a CUDA GPU" in err
    assert not (tmp_path / "o").exists()


def _result(recall: float, rmse: float, loudness: float, mrstft: tuple[float, float]) -> dict:
    row = {"voiced_recall": recall, "f0_rmse_hz": rmse}
    return {
        "mean": {
            "teacher": {**row, "mrstft": mrstft[0], "loudness_db": 0.0},
            "student": {**row, "mrstft": mrstft[1], "loudness_db": loudness},
        },
        "reference": {"voiced_fraction": 0.5},
    }


def test_each_size_checks_its_own_targets():
    nll = {"valid": 10.0, "test": 10.0}
    voiced = _result(0.9, 5.0, -0.5, (2.0, 2.1))
    met = {t: m for t, m, _ in targets("cpu-long", nll, voiced)}
    assert all(m for m in met.values() if m is not None) and None in met.values()
    assert sum(m is not None for m in met.values()) == 4  # MR-STFT, loudness, two pitch rows
    for worse in (
        _result(0.7, 5.0, -0.5, (2.0, 2.1)),  # recall under 0.8
        _result(0.9, 12.0, -0.5, (2.0, 2.1)),  # F0 RMSE over 10 Hz
        _result(0.9, 5.0, -1.5, (2.0, 2.1)),  # student 1.5 dB too quiet
        _result(0.9, 5.0, -0.5, (2.0, 2.3)),  # student MR-STFT 1.15 x the teacher's
    ):
        assert False in {m for _, m, _ in targets("cpu-long", nll, worse)}
    cpu = {t: m for t, m, _ in targets("cpu", nll, _result(0.6, math.nan, -1.5, (2.0, 2.0)))}
    assert cpu["teacher voiced recall >= 0.5 (cpu size, an aim)"] is True
    assert all(m is None for t, m in cpu.items() if "pitch:" in t)  # pitch bars: gpu, cpu-long


@pytest.mark.parametrize("size", sorted(SIZES))
def test_every_size_ships_configs_that_agree_on_the_features(size):
    conf = default_conf_dir()
    teacher = load_config(conf / f"teacher_{size}.yaml")
    student = load_config(conf / f"student_{size}.yaml")
    assert teacher.audio == student.audio
    assert teacher.data.valid_utterances == student.data.valid_utterances
