"""Reduced precision: which path runs where, and the student's bf16 output against float32.

The documented tolerance (docs/serving.md): for the same noise, the bf16 output is within 30 dB
SNR of the float32 output, and its multi-resolution STFT distance to a reference changes by
less than 1 %.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tone

from pwavenet.audio import LogMelSpectrogram
from pwavenet.config import AudioConfig
from pwavenet.errors import ConfigError
from pwavenet.eval.metrics import mrstft_distance
from pwavenet.models import precision
from pwavenet.models.precision import bf16_units, choose_precision, flows_mflop, precision_for
from pwavenet.models.student import Student
from pwavenet.models.teacher import WaveNet

NO_BF16 = bf16_units("cpu") is None
SKIP_REASON = "this CPU has no bf16 matrix units (neither amx_bf16 nor avx512_bf16 in its flags)"


@pytest.fixture
def flags(monkeypatch):
    """Pretend the CPU has the given flags."""

    def set_flags(*names: str) -> None:
        monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset(names))

    return set_flags


def test_auto_picks_bf16_for_the_student_only_where_the_cpu_has_bf16_units(flags):
    flags("avx2", "avx512f", "avx512_bf16")
    chosen = choose_precision("auto", "student", "cpu")
    assert chosen.dtype == torch.bfloat16 and "AVX512-BF16" in chosen.reason
    flags("avx2", "amx_bf16", "avx512_bf16")
    assert "AMX-BF16" in choose_precision("auto", "student", "cpu").reason
    flags("avx2", "avx512f")
    chosen = choose_precision("auto", "student", "cpu")
    assert chosen.dtype == torch.float32 and "no bf16" in chosen.reason
    assert choose_precision("auto", "teacher", "cpu").dtype == torch.float32


def test_auto_keeps_float32_for_a_student_too_small_for_bf16_to_pay(flags):
    flags("avx512_bf16")
    paper = Student(n_mels=80, flow_layers=(10, 10, 10, 30), residual_channels=64)
    small = Student(
        n_mels=80, flow_layers=(6, 6, 6), layers_per_cycle=6, residual_channels=16, gate_channels=32
    )
    assert flows_mflop(paper) == pytest.approx(4.67, abs=0.01)  # the benchmark's figure
    assert precision_for("auto", paper, "cpu").dtype == torch.bfloat16
    chosen = precision_for("auto", small, "cpu")
    assert chosen.dtype == torch.float32 and "too few for bf16 to pay" in chosen.reason
    assert precision_for("bfloat16", small, "cpu").dtype == torch.bfloat16  # asked: obeyed
    teacher = WaveNet(n_mels=80)
    assert precision_for("auto", teacher, "cpu").dtype == torch.float32


def test_explicit_dtypes_and_refusals(flags):
    flags("avx2")
    assert choose_precision("float32", "student", "cpu").name == "float32"
    forced = choose_precision("bfloat16", "student", "cpu")
    assert forced.dtype == torch.bfloat16 and "emulated" in forced.reason
    with pytest.raises(ConfigError, match="float32 only"):
        choose_precision("bfloat16", "teacher", "cpu")
    with pytest.raises(ConfigError, match="--dtype must be one of"):
        choose_precision("half", "student", "cpu")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 avx512_bf16\n\n")
    assert precision._cpu_flags.__wrapped__(info) == {"fpu", "avx2", "avx512_bf16"}
    assert precision._cpu_flags.__wrapped__(tmp_path / "missing") == frozenset()


def test_the_teacher_refuses_bf16():
    from test_vocoder import ARGS

    teacher = WaveNet(**ARGS["teacher"])
    with pytest.raises(ValueError, match="float32 only"):
        teacher.synthesize(torch.zeros(1, teacher.n_mels, 2), dtype=torch.bfloat16)


def _snr_db(reference: torch.Tensor, other: torch.Tensor) -> float:
    return 10 * math.log10(reference.pow(2).sum() / (reference - other).pow(2).sum())


@pytest.mark.skipif(NO_BF16, reason=SKIP_REASON)
def test_student_bf16_output_is_within_tolerance_of_float32():
    """The paper's flow depths at 32 channels, output layers given real work (a freshly built
    student's start at zero), on a tone's mel: same noise, float32 against bf16."""
    audio = AudioConfig(sample_rate=16000)
    torch.manual_seed(0)
    student = Student(
        n_mels=80, flow_layers=(10, 10, 10, 30), residual_channels=32, gate_channels=64
    ).eval()
    with torch.no_grad():
        for flow in student.flows:
            torch.nn.init.normal_(flow.out.weight, std=0.05)
    reference = torch.as_tensor(tone(0.5, audio.sample_rate), dtype=torch.float32)
    mel = LogMelSpectrogram.from_config(audio)(reference[None])
    noise = student.noise([mel.shape[-1] * 256], torch.Generator().manual_seed(1))
    full = student.synthesize(mel, noise=noise)
    half = student.synthesize(mel, noise=noise, dtype=torch.bfloat16)
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert not torch.equal(full, half)  # the bf16 path ran
    assert _snr_db(full, half) >= 30.0
    n = min(reference.numel(), full.shape[-1])
    before = mrstft_distance(full[0, :n], reference[:n])
    after = mrstft_distance(half[0, :n], reference[:n])
    assert abs(after - before) / before < 0.01
