"""The student through the command line: distill, synthesize (student and teacher), bad input."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import soundfile as sf
from conftest import reset_accelerate, tone, write_audio
from test_distillation import STUDENT
from training_setup import TINY, make_dump

from pwavenet import cli


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_student")
    dump = make_dump(root)
    common = ["--cpu", "--dump", str(dump), *TINY]
    teacher = ["train-teacher", *common, "--out", str(root / "teacher"), "train.max_steps=3"]
    assert cli.main(teacher) == 0
    reset_accelerate()
    distill = ["distill", *common, "--out", str(root / "student"), *STUDENT]
    distill += ["--teacher", str(root / "teacher" / "export"), "train.max_steps=3"]
    assert cli.main(distill) == 0
    reset_accelerate()
    return root


def test_distill_writes_an_export_with_its_teacher(run):
    meta = json.loads((run / "student" / "export" / "model.json").read_text())
    assert meta["kind"] == "student"
    assert meta["extra"]["teacher"] == str((run / "teacher" / "export").resolve())
    log = (run / "student" / "log.jsonl").read_text().splitlines()
    assert any("kl/loss" in json.loads(line) for line in log)


@pytest.mark.parametrize("kind", ["student", "teacher"])
def test_synthesize_from_mel_and_audio(run, tmp_path, capsys, kind):
    mel = np.random.default_rng(0).standard_normal((20, 6)).astype(np.float32) - 5
    np.save(tmp_path / "m.npy", mel)
    wav = write_audio(tmp_path / "in" / "a.wav", tone(0.05, 8000), 8000)
    args = ["synthesize", str(run / kind / "export"), str(tmp_path / "m.npy"), str(wav.parent)]
    rc = cli.main([*args, "--out", str(tmp_path / "out"), "--batch-size", "2"])
    assert rc == 0
    info = sf.info(str(tmp_path / "out" / "m.wav"))
    assert info.frames == 6 * 64 and info.samplerate == 8000 and info.subtype == "PCM_16"
    assert sf.info(str(tmp_path / "out" / "a.wav")).frames == 400 // 64 * 64
    out = capsys.readouterr().out
    assert "real-time factor" in out and "mean real-time factor" in out


def test_synthesis_is_seeded_and_chunking_does_not_change_it(run, tmp_path):
    mel = np.random.default_rng(1).standard_normal((20, 40)).astype(np.float32) - 5
    np.save(tmp_path / "m.npy", mel)
    outs = {}
    for name, chunk in (("one", "0"), ("chunked", "0.05")):  # 0.05 s = 400 samples
        args = ["synthesize", str(run / "student" / "export"), str(tmp_path / "m.npy")]
        assert cli.main([*args, "--out", str(tmp_path / name), "--chunk-seconds", chunk]) == 0
        outs[name], _ = sf.read(str(tmp_path / name / "m.wav"), dtype="int16")
    assert np.abs(outs["one"].astype(int) - outs["chunked"]).max() <= 1  # 16-bit rounding
    assert np.abs(outs["one"]).max() > 0


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["--model", "teacher"], "is a student export, not a teacher"),
        (["EMPTY"], "no audio or .npy mel files in this folder"),
        (["BADMEL"], r"mel must be \(20, frames\)"),
        (["NOFRAMES"], r"none\.npy: mel has no frames \(shape \(20, 0\)\)"),
        (["SHORTWAV"], r"short\.wav: too short for one mel frame"),
    ],
)
def test_synthesize_bad_input_is_one_line(run, tmp_path, capsys, args, pattern):
    (tmp_path / "empty").mkdir()
    np.save(tmp_path / "bad.npy", np.zeros((7, 5), np.float32))
    np.save(tmp_path / "ok.npy", np.zeros((20, 5), np.float32))
    np.save(tmp_path / "none.npy", np.zeros((20, 0), np.float32))
    write_audio(tmp_path / "short.wav", tone(3 / 8000, 8000), 8000)
    subst = {"EMPTY": str(tmp_path / "empty"), "BADMEL": str(tmp_path / "bad.npy")}
    subst |= {"NOFRAMES": str(tmp_path / "none.npy"), "SHORTWAV": str(tmp_path / "short.wav")}
    inputs = [subst[a] for a in args if a in subst] or [str(tmp_path / "ok.npy")]
    options = [a for a in args if a not in subst]
    export = str(run / "student" / "export")
    rc = cli.main(["synthesize", export, *inputs, "--out", str(tmp_path / "o"), *options])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert re.search(pattern, err), err
    assert not (tmp_path / "o").exists()


def test_distill_from_a_student_export_is_refused(run, tmp_path, capsys):
    dump = run / "dump"
    args = ["distill", "--cpu", "--dump", str(dump), "--out", str(tmp_path / "x"), *TINY]
    args += [*STUDENT, "--teacher", str(run / "student" / "export")]
    assert cli.main(args) == 1
    err = capsys.readouterr().err.strip()
    assert "is a student export, not a teacher" in err and len(err.splitlines()) == 1


def test_evaluate_scores_models_reads_speed_and_writes_the_report(run, tmp_path, capsys):
    refs = f"@{run / 'dump' / 'lists' / 'test.txt'}"
    systems = []
    for kind in ("student", "teacher"):
        out = tmp_path / kind
        assert cli.main(["synthesize", str(run / kind / "export"), refs, "--out", str(out)]) == 0
        systems += ["--system", f"{kind}={out}"]
    args = ["evaluate", refs, *systems, "--out", str(tmp_path / "eval")]
    args += ["--student", str(run / "student" / "export")]  # its teacher comes from the record
    args += ["--run", f"teacher={run / 'teacher'}", "--run", f"student={run / 'student'}"]
    assert cli.main([*args, "--kl-samples", "4"]) == 0
    printed = capsys.readouterr().out
    assert "The student's KL to the teacher is" in printed
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    nll = metrics["models"]["teacher_nll_bits"]
    kl = metrics["models"]["student_kl_nats"]
    n = len((run / "dump" / "lists" / "test.txt").read_text().split())
    assert len(nll) == len(kl) == n + 1  # every reference and the mean
    assert 0 < nll["mean"] < 20 and math.isfinite(kl["mean"])
    assert set(metrics["speed"]) == {"student", "teacher"}
    assert metrics["speed"]["student"]["samples_per_s"] > 0
    from pwavenet.eval.report import check_report

    assert check_report(tmp_path / "eval") == []


def test_evaluate_with_a_run_without_a_log_writes_nothing(run, tmp_path, capsys):
    refs = f"@{run / 'dump' / 'lists' / 'test.txt'}"
    args = ["evaluate", refs, "--system", f"x={tmp_path}", "--out", str(tmp_path / "eval")]
    rc = cli.main([*args, "--teacher", str(run / "teacher" / "export"), "--run", f"r={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and "log.jsonl" in err, err
    assert not (tmp_path / "eval").exists()


def test_synthesize_resamples_audio_of_another_rate_when_asked(run, tmp_path):
    wav = write_audio(tmp_path / "in" / "a.wav", tone(0.1, 16000), 16000)
    args = ["synthesize", str(run / "student" / "export"), str(wav), "--out", str(tmp_path)]
    assert cli.main(args) == 1  # refused unless asked
    assert cli.main([*args, "--resample"]) == 0
    info = sf.info(str(tmp_path / "a.wav"))
    assert info.samplerate == 8000 and info.frames == 800 // 64 * 64
