"""The teacher task on the generic trainer: teacher forcing by the log-likelihood of the real
samples, and the held-out NLL in bits per sample.

``train_teacher(cfg, dump, run_dir)`` is what ``pwavenet train-teacher`` calls; it works the same
in one process or under ``accelerate launch`` on many GPUs and nodes. :func:`log_prob` is the
one log-likelihood path: training, validation, :func:`evaluate_teacher` and the evaluation's
:func:`pwavenet.eval.scores.teacher_nll_bits` all score audio through it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import Config, audio_mismatch
from ..data.cache import FeatureCache
from ..data.dataset import SegmentDataset
from ..errors import DataError
from ..models.teacher import WaveNet
from .collective import Totals
from .lifecycle import exclusive_run
from .runs import fit_and_export, make_trainer, sample_mask, to_device
from .trainer import Trainer

__all__ = [
    "TeacherTask",
    "bits_per_sample",
    "build_teacher",
    "evaluate_teacher",
    "log_prob",
    "make_teacher_trainer",
    "mean_bits",
    "teacher_args",
    "train_teacher",
]

LN2 = math.log(2.0)  # nats per bit


def teacher_args(cfg: Config) -> dict[str, Any]:
    """Explicit constructor arguments of the teacher described by ``cfg``."""
    t = cfg.teacher
    return {
        "n_mels": cfg.audio.n_mels,
        "layers": t.layers,
        "cycles": t.cycles,
        "kernel_size": t.kernel_size,
        "residual_channels": t.residual_channels,
        "gate_channels": t.gate_channels,
        "skip_channels": t.skip_channels,
        "output": t.output,
        "mixtures": t.mixtures,
        "log_scale_min": t.log_scale_min,
        "upsample_scales": list(t.upsample_scales),
        "speakers": t.speakers,
        "speaker_channels": t.speaker_channels,
        "pitch": cfg.audio.pitch,
        "excitation": t.excitation,
        "pitch_lag": t.pitch_lag,
        "sample_rate": cfg.audio.sample_rate,
    }


def build_teacher(cfg: Config) -> WaveNet:
    """A freshly initialised teacher described by ``cfg``."""
    model = WaveNet(**teacher_args(cfg))
    model.audio = cfg.audio  # its synthesis (the pitch monitor) de-emphasises as exported
    return model


def log_prob(
    model: nn.Module,
    audio: torch.Tensor,
    mel: torch.Tensor,
    speaker: torch.Tensor | None = None,
) -> torch.Tensor:
    """The teacher's per-sample log-probability (nats) of ``audio (B, 1, T)`` given ``mel
    (B, n_mels, T // hop)``: ``(B, T)``. ``model`` may be wrapped for distributed training."""
    # Call forward through the (possibly DDP-wrapped) module so gradients synchronise.
    params = model(audio, mel, speaker)
    core = model.module if hasattr(model, "module") else model
    return core.sample_log_prob(params, audio)


def bits_per_sample(lp: torch.Tensor) -> float:
    """Mean negative log-likelihood in bits per sample of :func:`log_prob`'s ``(B, T)``."""
    return float(-lp.mean()) / LN2


class TeacherTask:
    """Teacher forcing: mean negative log-likelihood of the real samples, in nats."""

    def loss(
        self, model: nn.Module, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        lp = log_prob(model, batch["audio"], batch["mel"], batch.get("speaker"))
        mask = sample_mask(batch, lp.shape[-1])
        nll = -(lp * mask).sum() / mask.sum().clamp(min=1)
        return nll, {"nll/bits": float(nll.detach()) / LN2}

    def validation_totals(self, model: nn.Module, batch: dict[str, Any], index: int) -> Totals:
        """The batch's NLL in bits summed over its real samples, weighed by their number: the
        validation ``nll/bits`` is per sample over the whole set."""
        batch = to_device(batch, next(model.parameters()).device)
        lp = log_prob(model, batch["audio"], batch["mel"], batch.get("speaker"))
        mask = sample_mask(batch, lp.shape[-1])
        return {"nll/bits": (float(-(lp * mask).sum()) / LN2, float(mask.sum()))}


def make_teacher_trainer(
    cfg: Config, dump_dir: str | Path, run_dir: str | Path, *, cpu: bool = False
) -> Trainer:
    """A :class:`Trainer` for the teacher on a feature cache (model initialised from the seed)."""
    from accelerate.utils import set_seed

    cache = FeatureCache(dump_dir, cfg.audio)
    set_seed(cfg.train.seed)
    model = build_teacher(cfg)
    return make_trainer(cfg, cache, run_dir, task=TeacherTask(), model=model, cpu=cpu)


def train_teacher(
    cfg: Config,
    dump_dir: str | Path,
    run_dir: str | Path,
    *,
    resume: bool = True,
    cpu: bool = False,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> Path:
    """Train a teacher on a feature cache; returns the path of its inference export.

    With ``resume`` the newest intact checkpoint in ``run_dir`` is continued. The export
    (``run_dir/export``, EMA weights) is refreshed at every checkpoint and at the end. The run
    holds ``run_dir``'s lock throughout (:func:`pwavenet.train.lifecycle.exclusive_run`).
    """
    with exclusive_run(run_dir, cpu=cpu, timeout=cfg.train.collective_timeout):
        trainer = make_teacher_trainer(cfg, dump_dir, run_dir, cpu=cpu)
        return fit_and_export(
            trainer,
            cfg,
            run_dir,
            dump_dir=dump_dir,
            kind="teacher",
            model_args=teacher_args(cfg),
            resume=resume,
            progress=progress,
        )


@torch.no_grad()
def evaluate_teacher(
    model: WaveNet, cache: FeatureCache, split: str = "test"
) -> list[dict[str, Any]]:
    """Per-utterance held-out NLL: rows of ``{"id", "samples", "bits"}``."""
    diff = audio_mismatch(cache.audio, model.audio)
    if diff is not None:
        raise DataError(
            f"{cache.root}: features were made with other settings than the model's ({diff})"
        )
    ds = SegmentDataset(cache, split, segment_length=None)
    device = next(model.parameters()).device
    rows = []
    for i in range(len(ds.rows)):
        item = ds[i]
        speaker = torch.tensor([item["speaker"]], device=device) if "speaker" in item else None
        audio, mel = item["audio"][None].to(device), item["mel"][None].to(device)
        lp = log_prob(model, audio, mel, speaker)
        rows.append({"id": item["id"], "samples": lp.shape[-1], "bits": bits_per_sample(lp)})
    return rows


def mean_bits(rows: list[dict[str, Any]]) -> float:
    """Sample-weighted mean of :func:`evaluate_teacher`'s per-utterance bits per sample."""
    return sum(r["bits"] * r["samples"] for r in rows) / sum(r["samples"] for r in rows)
