"""Model-based scores of reference audio, and the synthesis speed of an output folder.

:func:`teacher_nll_bits` is the teacher's negative log-likelihood in bits per sample and
:func:`student_kl_nats` the Monte Carlo ``KL(student || teacher)`` per sample given the
reference's mel; both call the functions training uses. :func:`synthesis_speed` reads the
``synthesis.json`` that ``pwavenet synthesize`` leaves beside its outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audio import preemphasize
from ..config import AudioConfig
from ..errors import DataError
from ..features import Features

__all__ = ["student_kl_nats", "synthesis_speed", "teacher_nll_bits"]


def _reference_mel(wav: np.ndarray, audio: AudioConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``(audio (1, 1, frames * hop), mel (1, feature_channels, frames))`` of a reference
    waveform (:class:`~pwavenet.features.Features`: with ``audio.pitch``, its own F0 rows)."""
    mel = Features(audio)
    x = torch.from_numpy(np.asarray(wav, dtype=np.float32))
    with torch.no_grad():
        m = mel(x)
    x = preemphasize(x[: m.shape[-1] * audio.hop_length], audio.preemphasis)  # what it learnt
    return x[None, None], m[None]


@torch.no_grad()
def teacher_nll_bits(teacher: Any, wav: np.ndarray) -> float:
    """The teacher's negative log-likelihood of a 16-bit reference waveform ``(T,)`` given its
    own mel, in bits per sample (uniform 16-bit audio is 16), by the training's
    :func:`pwavenet.train.teacher.log_prob`."""
    from ..train.teacher import bits_per_sample, log_prob

    x, mel = _reference_mel(wav, teacher.audio)
    device = next(teacher.parameters()).device
    return bits_per_sample(log_prob(teacher, x.to(device), mel.to(device)))


# Monte Carlo draws per teacher-density evaluation: bounds the memory of a long utterance.
_DRAWS_AT_A_TIME = 4


@torch.no_grad()
def student_kl_nats(
    student: Any, teacher: Any, wav: np.ndarray, samples: int = 16, seed: int = 0
) -> float:
    """Monte Carlo ``KL(student || teacher)`` in nats per sample given the mel of a reference
    ``(T,)``: one student sample from seeded noise, the teacher run once on it, ``samples``
    draws per step scored with the teacher's continuous density minus the student's
    closed-form entropy, by the distillation's :func:`pwavenet.train.losses.distillation_kl`
    (Monte Carlo even for a Gaussian pair, whose training loss adds a regulariser)."""
    from ..train.losses import distillation_kl

    _, mel = _reference_mel(wav, student.audio)
    device = next(student.parameters()).device
    mel = mel.to(device)
    length = mel.shape[-1] * student.audio.hop_length
    z = student.noise([length], torch.Generator().manual_seed(seed), device)
    kl, _ = distillation_kl(
        student,
        teacher,
        student(z, mel),
        mel,
        samples=samples,
        closed_form=False,
        max_draws=_DRAWS_AT_A_TIME,
        generator=torch.Generator(device=device).manual_seed(seed + 1),
    )
    return float(kl)


def synthesis_speed(folder: str | Path) -> dict[str, Any] | None:
    """Aggregate speed of a ``pwavenet synthesize`` output folder from its ``synthesis.json``:
    ``{"samples_per_s", "rtf", "seconds", "device", "batch_size", "model"}``; ``None`` when
    the folder has no such record (e.g. audio made by another tool)."""
    from ..fileio import read_json
    from ..synthesis import SYNTHESIS_FORMAT, SYNTHESIS_LOG

    path = Path(folder) / SYNTHESIS_LOG
    if not path.is_file():
        return None
    data = read_json(path, SYNTHESIS_FORMAT, DataError, "synthesis record")
    rows = data["utterances"]
    samples = sum(r["samples"] for r in rows)
    elapsed = sum(r["samples"] / r["samples_per_s"] for r in rows)
    seconds = sum(r["seconds"] for r in rows)
    return {
        "model": data["model"],
        "device": data["device"],
        "batch_size": data["batch_size"],
        "seconds": seconds,
        "samples_per_s": samples / max(elapsed, 1e-12),
        "rtf": elapsed / max(seconds, 1e-12),
    }
