"""One synthesis interface: teacher and student exports load as vocoders with the same
declared attributes and ``synthesize`` call, and synthesis writes WAVs for either kind."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from pwavenet.config import load_config
from pwavenet.errors import ConfigError
from pwavenet.models.export import ExportError, load_student, load_vocoder, save_export
from pwavenet.models.student import Student
from pwavenet.models.teacher import WaveNet
from pwavenet.models.vocoder import Vocoder
from pwavenet.synthesis import SYNTHESIS_LOG, Utterance, synthesize

OVERRIDES = [
    "audio.sample_rate=8000",
    "audio.n_fft=64",
    "audio.hop_length=16",
    "audio.win_length=64",
    "audio.n_mels=4",
    "audio.fmax=null",
    "data.segment_length=256",
    "teacher.upsample_scales=[4, 4]",
    "student.upsample_scales=[4, 4]",
]
CFG = load_config(None, OVERRIDES)
ARGS = {
    "teacher": {
        "n_mels": 4,
        "layers": 2,
        "cycles": 1,
        "residual_channels": 4,
        "gate_channels": 8,
        "skip_channels": 4,
        "mixtures": 2,
        "upsample_scales": [4, 4],
    },
    "student": {
        "n_mels": 4,
        "flow_layers": [1, 2],
        "layers_per_cycle": 2,
        "residual_channels": 4,
        "gate_channels": 8,
        "upsample_scales": [4, 4],
        "log_scale_init": -2.0,
    },
}
EXTRA = {"steps": 3, "teacher": "/somewhere/teacher/export", "teacher_sha256": "ab" * 32}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """A tiny teacher and student export with random (non-trivial) weights."""
    root = tmp_path_factory.mktemp("vocoders")
    torch.manual_seed(0)
    out = {}
    for kind, cls in (("teacher", WaveNet), ("student", Student)):
        model = cls(**ARGS[kind])
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape) * 0.3)
        extra = EXTRA if kind == "student" else {"steps": 3}
        out[kind] = save_export(
            model, root / kind, kind=kind, model_args=ARGS[kind], cfg=CFG, extra=extra
        )
    return out


def utterances(frames: list[int]) -> list[Utterance]:
    """Random log-mels of the given frame counts, named ``u0, u1, ...``."""
    g = torch.Generator().manual_seed(5)
    return [
        Utterance(f"u{i}", torch.randn(4, n, generator=g) - 4.0, Path(f"u{i}.npy"))
        for i, n in enumerate(frames)
    ]


@pytest.mark.parametrize("kind", ["teacher", "student"])
def test_both_exports_load_as_vocoders_with_the_declared_attributes(exports, kind):
    model = load_vocoder(exports[kind])
    assert isinstance(model, Vocoder) and model.kind == kind
    assert model.audio == CFG.audio and model.hop_length == CFG.audio.hop_length
    assert model.provenance["steps"] == 3
    assert not model.training
    # the same call on either: its parameters, kinds and defaults are the base class's
    base = inspect.signature(Vocoder.synthesize).parameters
    own = inspect.signature(type(model).synthesize).parameters
    for name, p in base.items():
        assert name in own and own[name].kind == p.kind and own[name].default == p.default
    mel = torch.randn(2, 4, 5)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    audio = model.synthesize(mel, lengths=[80, 48], generator=gens, chunk_samples=32)
    assert audio.shape == (2, 80) and torch.isfinite(audio).all()
    assert float(audio[1, 48:].abs().sum()) == 0.0 and float(audio[0].abs().sum()) > 0


def test_the_loader_refuses_another_kind_and_the_student_keeps_its_teacher_record(exports):
    with pytest.raises(ExportError, match="is a teacher export, not a student"):
        load_vocoder(exports["teacher"], kind="student")
    student = load_student(exports["student"])
    assert student.teacher == {"path": EXTRA["teacher"], "sha256": EXTRA["teacher_sha256"]}
    assert Student(**ARGS["student"]).teacher == {"path": None, "sha256": None}


@pytest.mark.parametrize("kind", ["teacher", "student"])
def test_synthesis_writes_wavs_and_its_log_for_either_kind(exports, tmp_path, kind):
    model = load_vocoder(exports[kind])
    frames = [6, 3, 5]
    rows = synthesize(model, utterances(frames), tmp_path / "one", batch_size=1, seed=2)
    log = json.loads((tmp_path / "one" / SYNTHESIS_LOG).read_text())
    assert log["model"] == kind and len(log["utterances"]) == len(rows) == 3
    synthesize(model, utterances(frames), tmp_path / "all", batch_size=3, seed=2)
    for i, n in enumerate(frames):
        one, rate = sf.read(str(tmp_path / "one" / f"u{i}.wav"), dtype="int16")
        together, _ = sf.read(str(tmp_path / "all" / f"u{i}.wav"), dtype="int16")
        assert rate == 8000 and len(one) == n * 16
        assert np.abs(one.astype(int) - together).max() <= 1  # batching changes nothing
    assert np.abs(one).max() > 0


def test_synthesis_with_unset_feature_settings_is_a_clear_error(tmp_path):
    model = Student(**ARGS["student"]).eval()  # built, not loaded: no audio settings
    assert model.audio is None
    with pytest.raises(ConfigError, match=r"Student: its feature settings \(\.audio\) are unset"):
        synthesize(model, utterances([4]), tmp_path / "o")
    assert not (tmp_path / "o").exists()
