"""ONNX export of the student: one exported file runs in onnxruntime at any batch and length with
the torch student's output, the file is deterministic, and what cannot be exported is refused in
one line with nothing written. onnx, onnxscript and onnxruntime come with the dev extra: these
tests run in CI, never skipped."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from test_vocoder import ARGS, OVERRIDES

from pwavenet import cli
from pwavenet.config import load_config
from pwavenet.models.export import load_student, save_export
from pwavenet.models.onnx_export import ONNX_FORMAT, export_onnx, onnx_session
from pwavenet.models.student import Student
from pwavenet.models.teacher import WaveNet

# the tiny teacher and audio settings of tests/test_vocoder.py; a deeper student
CFG = load_config(None, OVERRIDES)
STUDENT = {**ARGS["student"], "flow_layers": [2, 3], "residual_channels": 6}
TEACHER = ARGS["teacher"]


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter drawn at random: the flows' output layers start at zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """A student and a teacher export, and the student exported to ONNX."""
    root = tmp_path_factory.mktemp("onnx")
    out = {}
    for kind, cls, args in (("student", Student, STUDENT), ("teacher", WaveNet, TEACHER)):
        model = randomized(cls(**args))
        out[kind] = save_export(model, root / kind, kind=kind, model_args=args, cfg=CFG)
    out["onnx"] = export_onnx(load_student(out["student"]), root / "student.onnx")
    return out


@pytest.mark.parametrize("frames", [5, 23])
def test_onnxruntime_equals_the_torch_student_at_two_lengths(exports, frames):
    student = load_student(exports["student"])
    session = onnx_session(exports["onnx"])
    g = torch.Generator().manual_seed(frames)
    mel = torch.randn(2, 4, frames, generator=g) - 4.0
    z = student.noise([frames * 16] * 2, torch.Generator().manual_seed(1))
    expected = student.synthesize(mel, noise=z)
    (audio,) = session.run(None, {"mel": mel.numpy(), "z": z.numpy()})
    assert audio.shape == (2, frames * 16) and audio.dtype == np.float32
    assert float(expected.abs().max()) > 0.1  # the flows do work: not a trivial comparison
    np.testing.assert_allclose(audio, expected.numpy(), atol=1e-4, rtol=0)
    # batch 1 from the same file: the batch dimension is dynamic too
    (one,) = session.run(None, {"mel": mel[1:].numpy(), "z": z[1:].numpy()})
    np.testing.assert_allclose(one, expected[1:].numpy(), atol=1e-4, rtol=0)


def test_the_file_is_deterministic_and_records_the_feature_settings(exports, tmp_path):
    import onnx

    again = export_onnx(load_student(exports["student"]), tmp_path / "again.onnx")
    assert again.read_bytes() == exports["onnx"].read_bytes()
    model = onnx.load(str(again))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["pwavenet.format"] == f'"{ONNX_FORMAT}"'
    assert props["pwavenet.hop_length"] == "16" and props["pwavenet.mel_rows"] == "4"
    assert [i.name for i in model.graph.input] == ["mel", "z"]
    assert not list(tmp_path.glob(".*"))  # no temporary file left beside it


def test_cli_writes_the_graph(exports, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert cli.main(["export-onnx", str(exports["student"]), str(out)]) == 0
    assert out.read_bytes() == exports["onnx"].read_bytes()
    assert "export-onnx:" in capsys.readouterr().out


def refusal(argv: list[str], capsys) -> str:
    assert cli.main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pwavenet: error: ")
    return lines[0]


def test_cli_refuses_bad_input_in_one_line_and_writes_nothing(exports, tmp_path, capsys):
    out = tmp_path / "out.onnx"
    line = refusal(["export-onnx", str(exports["teacher"]), str(out)], capsys)
    assert "is a teacher export, not a student" in line
    line = refusal(["export-onnx", str(tmp_path / "missing"), str(out)], capsys)
    assert "no such export folder" in line
    (tmp_path / "plain").mkdir()
    line = refusal(["export-onnx", str(tmp_path / "plain"), str(out)], capsys)
    assert "not a pwavenet export" in line
    assert list(tmp_path.iterdir()) == [tmp_path / "plain"]


def test_cli_refuses_without_the_onnx_packages(exports, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # find_spec then says: not installed
    out = tmp_path / "out.onnx"
    line = refusal(["export-onnx", str(exports["student"]), str(out)], capsys)
    assert "needs onnxscript: pip install 'pwavenet[onnx]'" in line
    assert not out.exists()


def test_a_pitch_student_takes_its_pitch_rows(tmp_path):
    args = {**STUDENT, "pitch": True}
    student = randomized(Student(**args)).eval()
    path = export_onnx(student, tmp_path / "pitch.onnx")
    g = torch.Generator().manual_seed(3)
    mel = torch.randn(2, 6, 9, generator=g)
    z = student.noise([9 * 16] * 2, torch.Generator().manual_seed(4))
    (audio,) = onnx_session(path).run(None, {"mel": mel.numpy(), "z": z.numpy()})
    np.testing.assert_allclose(audio, student.synthesize(mel, noise=z).numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("args", "overrides", "cause"),
    [
        ({"pitch": True, "excitation": "sine", "sample_rate": 8000}, [], "sine excitation"),
        ({"speakers": 2}, [], "speakers"),
        ({}, ["audio.preemphasis=0.9"], "pre-emphasised"),
    ],
)
def test_students_the_graph_would_not_reproduce_are_refused(
    tmp_path, capsys, args, overrides, cause
):
    model_args = {**STUDENT, **args}
    cfg = load_config(None, [*OVERRIDES, *overrides])
    path = save_export(
        Student(**model_args), tmp_path / "s", kind="student", model_args=model_args, cfg=cfg
    )
    line = refusal(["export-onnx", str(path), str(tmp_path / "out.onnx")], capsys)
    assert cause in line
    assert not (tmp_path / "out.onnx").exists()
