"""The teacher through the command line: train, resume, evaluate, generate, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from conftest import tone, write_audio
from training_setup import TINY, make_dump

from pwavenet import cli


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_teacher")
    dump = make_dump(root)
    args = ["train-teacher", "--cpu", "--dump", str(dump), "--out", str(root / "run"), *TINY]
    assert cli.main([*args, "train.max_steps=4", "train.save_every=2"]) == 0
    return root, dump, args


def test_train_resumes_and_exports(run, capsys):
    root, _, args = run
    assert (root / "run" / "export" / "model.safetensors").is_file()
    # Running again with more steps continues from step 4.
    assert cli.main([*args, "train.max_steps=6", "train.save_every=2"]) == 0
    steps = [json.loads(x)["step"] for x in (root / "run" / "log.jsonl").read_text().splitlines()]
    assert steps[-1] == 6 and steps.count(5) <= 1
    assert "6 steps done" in capsys.readouterr().out


def test_eval_teacher_table_and_json(run, capsys, tmp_path):
    root, dump, _ = run
    out = tmp_path / "eval.json"
    assert (
        cli.main(["eval-teacher", str(root / "run" / "export"), str(dump), "--json", str(out)]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| utterance") and lines[-1].startswith("| **mean**")
    data = json.loads(out.read_text())
    assert len(data["utterances"]) == 2 and 0 < data["mean_bits"] < 20


def test_generate_from_mel_and_audio(run, tmp_path, capsys):
    root, _, _ = run
    mel = np.random.default_rng(0).standard_normal((20, 6)).astype(np.float32) - 5
    np.save(tmp_path / "m.npy", mel)
    wav = write_audio(tmp_path / "in" / "a.wav", tone(0.05, 8000), 8000)
    rc = cli.main(
        [
            "generate",
            str(root / "run" / "export"),
            str(tmp_path / "m.npy"),
            str(wav.parent),
            "--out",
            str(tmp_path / "out"),
            "--batch-size",
            "2",
        ]
    )
    assert rc == 0
    info = sf.info(str(tmp_path / "out" / "m.wav"))
    assert info.frames == 6 * 64 and info.samplerate == 8000 and info.subtype == "PCM_16"
    assert sf.info(str(tmp_path / "out" / "a.wav")).frames == 400 // 64 * 64
    assert "samples/s" in capsys.readouterr().out


@pytest.mark.parametrize(
    "make, pattern",
    [
        (
            lambda d: np.save(d / "x.npy", np.zeros((7, 5), np.float32)),
            r"mel must be \(20, frames\)",
        ),
        (lambda d: write_audio(d / "x.wav", tone(0.1, 16000), 16000), "sample rate 16000 Hz"),
        (lambda d: None, "no such file or folder"),
    ],
)
def test_generate_bad_input_is_one_line(run, tmp_path, capsys, make, pattern):
    root, _, _ = run
    make(tmp_path)
    target = next(iter(tmp_path.iterdir()), tmp_path / "missing.npy")
    rc = cli.main(
        ["generate", str(root / "run" / "export"), str(target), "--out", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    import re

    assert re.search(pattern, err), err
    assert not (tmp_path / "out").exists()


def test_student_export_is_refused_as_teacher(run, tmp_path, capsys):
    root, dump, _ = run
    meta = root / "run" / "export" / "model.json"
    fake = tmp_path / "fake"
    fake.mkdir()
    for f in (root / "run" / "export").iterdir():
        (fake / f.name).write_bytes(f.read_bytes())
    data = json.loads(meta.read_text())
    data["kind"] = "student"
    (fake / "model.json").write_text(json.dumps(data))
    assert cli.main(["eval-teacher", str(fake), str(dump)]) == 1
    assert "is a student export, not a teacher" in capsys.readouterr().err
