"""Probability density distillation: the student task on the generic trainer (docs/design.md §4).

``train_student(cfg, dump, run_dir)`` is what ``pwavenet distill`` calls. The teacher comes from
its export, frozen: eval mode, ``requires_grad`` off, outside the optimizer and outside the
distributed wrapper (so no gradient synchronisation), yet differentiable with respect to its
input, through which the KL's gradient reaches the student.

The loss is the sum of the registered terms (:data:`TERMS`: kl, power, loudness, contrastive)
weighted by ``distill.loss_weights``; a term of weight 0 is not computed.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import LOSS_TERMS, AudioConfig, Config, DistillConfig, audio_mismatch
from ..data.cache import FeatureCache
from ..errors import ConfigError, DataError
from ..models.export import WEIGHTS
from ..models.student import Student, log_scale_for_step_size
from ..models.teacher import WaveNet
from .collective import Totals
from .lifecycle import exclusive_run
from .losses import (
    distillation_kl,
    log_power_loss,
    loudness_loss,
    magnitude_loss,
    masked_mean,
    mrstft_loss,
    power_loss,
)
from .runs import fit_and_export, make_trainer, sample_mask, to_device
from .trainer import Trainer

logger = logging.getLogger(__name__)

__all__ = [
    "TERMS",
    "DistillTask",
    "StudentStep",
    "build_student",
    "data_step_std",
    "make_distill_trainer",
    "student_args",
    "train_student",
]


# The spectral losses ``distill.power_loss`` may name, besides "mrstft" (which takes no STFT
# settings); all take ``(x, y, n_fft, hop, win)``.
SPECTRAL_LOSSES = {"power": power_loss, "logpower": log_power_loss, "magnitude": magnitude_loss}
# Fixed and arbitrary (a date): validation draws the same noise and Monte Carlo samples at every
# validation (batch i from seed VALIDATION_SEED + i), so its curves compare training steps, not
# draws, and do not depend on how the batches fall on processes.
VALIDATION_SEED = 20_240_229
_VALID_SIGNALS = ("loss", "rms/ratio_db", "scale/log_s_tot")  # logged beside the term losses


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
        "pitch": cfg.audio.pitch,
        "excitation": s.excitation,
        "sample_rate": cfg.audio.sample_rate,
    }


def build_student(cfg: Config, log_scale_init: float) -> Student:
    model = Student(**student_args(cfg, log_scale_init))
    model.audio = cfg.audio  # its synthesis (the pitch monitor) de-emphasises as exported
    return model


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


@dataclass
class StudentStep:
    """One distillation step's inputs to the loss terms: the student (unwrapped), its output
    ``out`` on fresh noise, the real ``audio (B, T)``, ``mel (B, n_mels, T // hop)``, the
    speakers (or None) and the ``mask (B, T)`` of real samples."""

    student: Student
    out: Any
    audio: torch.Tensor
    mel: torch.Tensor
    speaker: torch.Tensor | None
    mask: torch.Tensor

    def signals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The student's sample and the real audio, float32 and zero past each length."""
        return self.out.x.float() * self.mask, self.audio.float() * self.mask


# A term maps (task, step) to (value, extra metrics), or None where it does not apply.
LossTerm = Callable[["DistillTask", StudentStep], "tuple[torch.Tensor, dict[str, float]] | None"]
TERMS: dict[str, LossTerm] = {}  # name -> term, in the order the total sums them


def _term(name: str) -> Callable[[LossTerm], LossTerm]:
    """Register the decorated function as the loss term ``name``."""

    def register(fn: LossTerm) -> LossTerm:
        TERMS[name] = fn
        return fn

    return register


@_term("kl")
def _kl_term(task: DistillTask, step: StudentStep) -> tuple[torch.Tensor, dict[str, float]]:
    """KL(student || teacher) given the step's own mel."""
    return task.kl(step, step.mel, step.speaker)


@_term("power")
def _power_term(task: DistillTask, step: StudentStep) -> tuple[torch.Tensor, dict[str, float]]:
    """The spectral loss named by ``distill.power_loss``."""
    with torch.autocast(device_type=step.audio.device.type, enabled=False):
        x, y = step.signals()
        if task.cfg.power_loss == "mrstft":  # its resolutions are fixed: see MRSTFT_RESOLUTIONS
            return mrstft_loss(x, y), {}
        fn = SPECTRAL_LOSSES[task.cfg.power_loss]
        a = task.audio
        return fn(x, y, a.n_fft, a.hop_length, a.win_length), {}


@_term("loudness")
def _loudness_term(task: DistillTask, step: StudentStep) -> tuple[torch.Tensor, dict[str, float]]:
    """The energy-envelope loss: the guard against a whispering student."""
    with torch.autocast(device_type=step.audio.device.type, enabled=False):
        x, y = step.signals()
        return loudness_loss(x, y, task.audio.win_length, task.audio.hop_length), {}


@_term("contrastive")
def _contrastive_term(
    task: DistillTask, step: StudentStep
) -> tuple[torch.Tensor, dict[str, float]] | None:
    """Minus the KL against the teacher given another utterance's mel (the batch rolled by
    one): the student is pushed away from outputs that fit any mel. Needs two utterances."""
    if step.audio.shape[0] < 2:
        return None
    other = step.speaker.roll(1, 0) if step.speaker is not None else None
    mismatched, _ = task.kl(step, step.mel.roll(1, 0), other)
    return -mismatched, {"contrastive/kl": float(mismatched.detach())}


if tuple(TERMS) != LOSS_TERMS:  # config.LOSS_TERMS is the documented list of these names
    raise ImportError(f"loss terms {tuple(TERMS)} differ from config.LOSS_TERMS {LOSS_TERMS}")


class DistillTask:
    """Student loss: the sum over :data:`TERMS` of ``distill.loss_weights[term] * term``, i.e.
    ``w_kl KL + w_power spectral + w_loudness energy envelope - w_contrastive KL(other mel)``
    (``distill.contrastive_gamma`` is the contrastive weight's alias). Terms of weight 0 are
    not computed. The KL is Monte Carlo (``distill.samples`` draws per step) unless student
    and teacher are both Gaussian, where ClariNet's closed form with its regulariser is used.
    """

    def __init__(self, teacher: WaveNet, cfg: DistillConfig, audio: AudioConfig) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.cfg, self.audio = cfg, audio
        self.weights = {k: w for k, w in cfg.term_weights().items() if w != 0}
        if not self.weights:
            raise ConfigError("distill.loss_weights: every loss term weighs 0")

    def _teacher_on(self, device: torch.device) -> WaveNet:
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        return self.teacher

    def kl(
        self, step: StudentStep, mel: torch.Tensor, speaker: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean per-step KL(student || teacher given ``mel``) and its diagnostics."""
        return distillation_kl(
            step.student,
            self._teacher_on(step.out.x.device),
            step.out,
            mel,
            speaker,
            samples=self.cfg.samples,
            mask=step.mask,
            regularizer=self.cfg.gaussian_regularizer,
        )

    def loss(
        self, model: nn.Module, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        student: Student = model.module if hasattr(model, "module") else model
        audio, mel, speaker = batch["audio"][:, 0], batch["mel"], batch.get("speaker")
        mask = sample_mask(batch, audio.shape[-1])
        z = student.noise(batch["lengths"].tolist(), None, audio.device)
        out = model(z, mel, speaker)  # through the (possibly distributed) wrapper
        step = StudentStep(
            student=student, out=out, audio=audio, mel=mel, speaker=speaker, mask=mask
        )
        total: torch.Tensor | None = None
        metrics: dict[str, float] = {}
        for name, weight in self.weights.items():
            term = TERMS[name](self, step)
            if term is None:
                continue
            value, extra = term
            total = weight * value if total is None else total + weight * value
            metrics.update(extra)
            metrics[f"{name}/loss"] = float(value.detach())
        if total is None:
            raise ConfigError(f"distill.loss_weights: no weighted term applies ({self.weights})")
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
            # 1e-9 (-180 dB) keeps the ratio finite for a silent student or a silent batch
            "rms/ratio_db": 20 * math.log10(max(rms_x, 1e-9) / max(rms_y, 1e-9)),
            "scale/log_s_tot": float(masked_mean(out.log_scale.detach().float(), mask)),
        }

    def validation_totals(self, model: nn.Module, batch: dict[str, Any], index: int) -> Totals:
        """One validation batch, each metric weighing 1 (validation means them over batches,
        i.e. utterances), with noise fixed by the batch's ``index`` (comparable across steps,
        and the same on whichever process validates it): every term training weighs
        (``<term>/loss``; the contrastive term needs two utterances per batch, so with one per
        batch it is absent), the total ``loss``, and the loudness and scale signals
        ``rms/ratio_db``, ``scale/log_s_tot``."""
        device = next(model.parameters()).device
        cuda = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(VALIDATION_SEED + index)
            _, metrics = self.loss(model, to_device(batch, device))
        names = [f"{t}/loss" for t in self.weights] + list(_VALID_SIGNALS)
        return {k: (metrics[k], 1.0) for k in names if k in metrics}


def _check_teacher(teacher: WaveNet, cfg: Config, path: str | Path) -> None:
    """Refuse a teacher whose feature settings are not the config's."""
    diff = audio_mismatch(teacher.audio, cfg.audio)
    if diff is not None:
        raise ConfigError(
            f"{path}: the teacher was trained with other feature settings than this config "
            f"({diff}); use the teacher's audio settings"
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
    task = DistillTask(teacher, cfg.distill, cfg.audio)
    trainer = make_trainer(cfg, cache, run_dir, task=task, model=student, cpu=cpu)
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
    the teacher's path and the sha256 of its weights. The run holds ``run_dir``'s lock
    throughout (:func:`pwavenet.train.lifecycle.exclusive_run`)."""
    with exclusive_run(run_dir, cpu=cpu, timeout=cfg.train.collective_timeout):
        trainer, log_scale_init = make_distill_trainer(cfg, dump_dir, run_dir, cpu=cpu)
        teacher_dir = Path(cfg.distill.teacher)
        return fit_and_export(
            trainer,
            cfg,
            run_dir,
            dump_dir=dump_dir,
            kind="student",
            model_args=student_args(cfg, log_scale_init),
            extra={
                "teacher": str(teacher_dir.resolve()),
                "teacher_sha256": file_sha256(teacher_dir / WEIGHTS),
            },
            resume=resume,
            progress=progress,
        )
