"""Probability density distillation: the student task on the generic trainer (SPEC section 4).

``train_student(cfg, dump, run_dir)`` is what ``pwavenet distill`` calls. The teacher comes from
its export, frozen: eval mode, ``requires_grad`` off, outside the optimizer and outside the
distributed wrapper (so no gradient synchronisation), yet differentiable with respect to its
input, through which the KL's gradient reaches the student.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import AudioConfig, Config, DistillConfig
from ..data.cache import FeatureCache
from ..errors import ConfigError, DataError
from ..models.export import WEIGHTS
from ..models.student import Student, log_scale_for_step_size
from ..models.teacher import WaveNet
from .losses import (
    gaussian_kl_regularized,
    log_power_loss,
    loudness_loss,
    magnitude_loss,
    masked_mean,
    monte_carlo_kl,
    mrstft_loss,
    power_loss,
)
from .teacher import fit_and_export, make_loaders, sample_mask, to_device
from .trainer import Trainer

logger = logging.getLogger(__name__)

__all__ = [
    "DistillTask",
    "build_student",
    "data_step_std",
    "make_distill_trainer",
    "student_args",
    "train_student",
]


def student_args(cfg: Config, log_scale_init: float) -> dict[str, Any]:
    """Explicit constructor arguments of the student described by ``cfg``."""
    s = cfg.student
    return {
        "n_mels": cfg.audio.n_mels,
        "flow_layers": list(s.flow_layers),
        "layers_per_cycle": s.layers_per_cycle,
        "kernel_size": s.kernel_size,
        "residual_channels": s.residual_channels,
        "gate_channels": s.gate_channels,
        "base": s.base,
        "log_scale_min": s.log_scale_min,
        "log_scale_max": s.log_scale_max,
        "log_scale_init": log_scale_init,
        "upsample_scales": list(s.upsample_scales),
        "speakers": cfg.teacher.speakers,
        "speaker_channels": cfg.teacher.speaker_channels,
    }


def build_student(cfg: Config, log_scale_init: float) -> Student:
    return Student(**student_args(cfg, log_scale_init))


def data_step_std(cache: FeatureCache, split: str = "train", max_utterances: int = 64) -> float:
    """Standard deviation of sample-to-sample differences ``x_t - x_{t-1}`` over (up to
    ``max_utterances`` evenly spaced) utterances of a split: the data's typical step size."""
    rows = cache.entries(split)
    if not rows:
        raise DataError(f"{cache.root}: the '{split}' split is empty")
    picked = rows[:: max(1, len(rows) // max_utterances)][:max_utterances]
    total, count = 0.0, 0
    for row in picked:
        audio = cache.load(row)[0].double()
        diff = audio[1:] - audio[:-1]
        total += float((diff * diff).sum())
        count += diff.numel()
    return math.sqrt(total / max(count, 1))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DistillTask:
    """Student loss: ``w_kl * KL + w_power * spectral + w_loudness * energy envelope
    - gamma * KL(mismatched mel)``.

    The KL is Monte Carlo (``distill.samples`` draws per step) unless student and teacher are
    both Gaussian, where ClariNet's closed form with its log-scale regulariser is used.
    """

    def __init__(self, teacher: WaveNet, cfg: DistillConfig, audio: AudioConfig) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.cfg, self.audio = cfg, audio
        self.weights = {"kl": 1.0, "power": 0.0, "loudness": 0.0, **cfg.loss_weights}

    def _teacher_on(self, device: torch.device) -> WaveNet:
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        return self.teacher

    def _spectral(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a = self.audio
        if self.cfg.power_loss == "mrstft":
            return mrstft_loss(x, y)
        fn = {"power": power_loss, "logpower": log_power_loss, "magnitude": magnitude_loss}[
            self.cfg.power_loss
        ]
        return fn(x, y, a.n_fft, a.hop_length, a.win_length)

    def _kl(
        self,
        student: Student,
        out: Any,
        mel: torch.Tensor,
        speaker: torch.Tensor | None,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean per-step KL(student || teacher given ``mel``) and its diagnostics."""
        teacher = self._teacher_on(out.x.device)
        params = teacher(out.x[:, None], mel, speaker)  # one pass over the student's sample
        with torch.autocast(device_type=out.x.device.type, enabled=False):
            q = student.distribution(out.loc.float(), out.log_scale.float())
            p = teacher.distribution(params.float())
            if student.base == "gaussian" and teacher.output == "gaussian":
                per_step = gaussian_kl_regularized(q, p, self.cfg.gaussian_regularizer)
                return masked_mean(per_step, mask), {}
            est = monte_carlo_kl(p.log_density, q, self.cfg.samples, mask=mask)
            return masked_mean(est.kl, mask), {
                "kl/cross_entropy": float(masked_mean(est.cross_entropy.detach(), mask)),
                "kl/entropy": float(masked_mean(est.entropy.detach(), mask)),
                "kl/ce_std": float(est.draws.std()) if est.draws.numel() > 1 else 0.0,
            }

    def loss(
        self, model: nn.Module, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        student: Student = model.module if hasattr(model, "module") else model
        audio, mel, speaker = batch["audio"][:, 0], batch["mel"], batch.get("speaker")
        mask = sample_mask(batch, audio.shape[-1])
        z = student.noise(batch["lengths"].tolist(), None, audio.device)
        out = model(z, mel, speaker)  # through the (possibly distributed) wrapper
        kl, metrics = self._kl(student, out, mel, speaker, mask)
        total = self.weights["kl"] * kl
        with torch.autocast(device_type=audio.device.type, enabled=False):
            x = out.x.float() * mask
            spectral = self._spectral(x, audio.float() * mask)
            total = total + self.weights["power"] * spectral
            metrics["power/loss"] = float(spectral.detach())
            if self.weights["loudness"]:
                a = self.audio
                level = loudness_loss(x, audio.float() * mask, a.win_length, a.hop_length)
                total = total + self.weights["loudness"] * level
                metrics["loudness/loss"] = float(level.detach())
        metrics["kl/loss"] = float(kl.detach())
        if self.cfg.contrastive_gamma > 0 and audio.shape[0] > 1:
            other = speaker.roll(1, 0) if speaker is not None else None
            mismatched, _ = self._kl(student, out, mel.roll(1, 0), other, mask)
            total = total - self.cfg.contrastive_gamma * mismatched
            metrics["contrastive/kl"] = float(mismatched.detach())
        metrics.update(self._health(out, audio, mask))
        metrics["loss"] = float(total.detach())
        return total, metrics

    @staticmethod
    def _health(out: Any, audio: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
        """Loudness and scale signals that show a whispering or collapsing student early."""
        x = out.x.detach().float()
        rms_x = math.sqrt(float(masked_mean(x * x, mask)))
        rms_y = math.sqrt(float(masked_mean(audio.float() ** 2, mask)))
        return {
            "rms/student": rms_x,
            "rms/data": rms_y,
            "rms/ratio_db": 20 * math.log10(max(rms_x, 1e-9) / max(rms_y, 1e-9)),
            "scale/log_s_tot": float(masked_mean(out.log_scale.detach().float(), mask)),
        }

    def validate(self, model: nn.Module, loader: Iterable[dict[str, Any]]) -> dict[str, float]:
        """Mean metrics over the validation utterances with fixed noise (comparable across
        steps): KL, spectral loss and loudness."""
        device = next(model.parameters()).device
        sums: dict[str, float] = {}
        count = 0
        cuda = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(20_240_229)
            for batch in loader:
                batch = to_device(batch, device)
                _, metrics = self.loss(model, batch)
                for k in ("kl/loss", "power/loss", "rms/ratio_db", "scale/log_s_tot"):
                    sums[k] = sums.get(k, 0.0) + metrics[k]
                count += 1
        return {k: v / max(count, 1) for k, v in sums.items()}


def _check_teacher(teacher: WaveNet, cfg: Config, path: str | Path) -> None:
    own = dataclasses.asdict(cfg.audio)
    theirs = dataclasses.asdict(teacher.audio)
    diff = [f"{k} {theirs[k]!r} vs {v!r}" for k, v in own.items() if theirs.get(k) != v]
    if diff:
        raise ConfigError(
            f"{path}: the teacher was trained with other feature settings than this config "
            f"({'; '.join(diff)}); use the teacher's audio settings"
        )


def _init_upsampler(student: Student, teacher: WaveNet) -> None:
    if student.upsampler.scales != teacher.upsampler.scales:
        logger.info("upsampler scales differ from the teacher's: student upsampler starts fresh")
        return
    student.upsampler.load_state_dict(teacher.upsampler.state_dict())


def make_distill_trainer(
    cfg: Config, dump_dir: str | Path, run_dir: str | Path, *, cpu: bool = False
) -> tuple[Trainer, float]:
    """A :class:`Trainer` distilling ``cfg.distill.teacher`` into a new student; also returns
    the student's starting ``log s_tot`` (from the data's step size)."""
    from accelerate import PartialState
    from accelerate.utils import set_seed

    from ..models.export import load_teacher

    if not cfg.distill.teacher:
        raise ConfigError("distill.teacher is empty: give the teacher export folder")
    teacher = load_teacher(cfg.distill.teacher)
    _check_teacher(teacher, cfg, cfg.distill.teacher)
    cache = FeatureCache(dump_dir, cfg.audio)
    log_scale_init = log_scale_for_step_size(data_step_std(cache), cfg.student.base)
    set_seed(cfg.train.seed)
    student = build_student(cfg, log_scale_init)
    if cfg.distill.init_upsampler:
        _init_upsampler(student, teacher)
    train_loader, valid_loader = make_loaders(cfg, cache, PartialState(cpu=cpu).num_processes)
    if len(train_loader) == 0:
        raise DataError(f"{dump_dir}: too few training segments for one batch")
    trainer = Trainer(
        task=DistillTask(teacher, cfg.distill, cfg.audio),
        model=student,
        train_loader=train_loader,
        valid_loader=valid_loader,
        optim=cfg.optim,
        train=cfg.train,
        run_dir=run_dir,
        cpu=cpu,
    )
    return trainer, log_scale_init


def train_student(
    cfg: Config,
    dump_dir: str | Path,
    run_dir: str | Path,
    *,
    resume: bool = True,
    cpu: bool = False,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> Path:
    """Distill a student; returns the path of its export (``run_dir/export``), which records
    the teacher's path and the sha256 of its weights."""
    trainer, log_scale_init = make_distill_trainer(cfg, dump_dir, run_dir, cpu=cpu)
    teacher_dir = Path(cfg.distill.teacher)
    return fit_and_export(
        trainer,
        cfg,
        run_dir,
        kind="student",
        model_args=student_args(cfg, log_scale_init),
        extra={
            "teacher": str(teacher_dir.resolve()),
            "teacher_sha256": file_sha256(teacher_dir / WEIGHTS),
        },
        resume=resume,
        progress=progress,
    )
