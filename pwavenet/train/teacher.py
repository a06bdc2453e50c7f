"""Training entry points: the teacher task on the generic trainer, and held-out evaluation.

``train_teacher(cfg, dump, run_dir)`` is what ``pwavenet train-teacher`` calls; it works the same
in one process or under ``accelerate launch`` on many GPUs and nodes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..config import Config, save_config
from ..data.cache import FeatureCache
from ..data.dataset import Collate, EpochSampler, SegmentDataset
from ..errors import DataError
from ..models.export import save_export
from ..models.teacher import WaveNet
from .trainer import Trainer, latest_checkpoint

__all__ = [
    "TeacherTask",
    "build_teacher",
    "evaluate_teacher",
    "fit_and_export",
    "make_teacher_trainer",
    "mean_bits",
    "teacher_args",
    "train_teacher",
]

LN2 = math.log(2.0)


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
    }


def build_teacher(cfg: Config) -> WaveNet:
    return WaveNet(**teacher_args(cfg))


def sample_mask(batch: dict[str, Any], steps: int) -> torch.Tensor:
    """``(B, T)`` float mask of the real (unpadded) samples of a collated batch."""
    t = torch.arange(steps, device=batch["audio"].device)
    return (t[None, :] < batch["lengths"].to(t.device)[:, None]).float()


class TeacherTask:
    """Teacher forcing: mean negative log-likelihood of the real samples, in nats."""

    def loss(
        self, model: nn.Module, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        lp = _log_prob(model, batch)
        mask = sample_mask(batch, lp.shape[-1])
        nll = -(lp * mask).sum() / mask.sum().clamp(min=1)
        return nll, {"nll/bits": float(nll.detach()) / LN2}

    def validate(self, model: nn.Module, loader: Iterable[dict[str, Any]]) -> dict[str, float]:
        total, count = 0.0, 0.0
        for batch in loader:
            batch = to_device(batch, next(model.parameters()).device)
            lp = _log_prob(model, batch)
            mask = sample_mask(batch, lp.shape[-1])
            total += float(-(lp * mask).sum())
            count += float(mask.sum())
        return {"nll/bits": total / max(count, 1.0) / LN2}


def _log_prob(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    # Call forward through the (possibly DDP-wrapped) module so gradients synchronise.
    params = model(batch["audio"], batch["mel"], batch.get("speaker"))
    core = model.module if hasattr(model, "module") else model
    return core.sample_log_prob(params, batch["audio"])


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The batch with its tensors on ``device``."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def make_loaders(cfg: Config, cache: FeatureCache, processes: int) -> tuple[DataLoader, DataLoader]:
    """Training segments (deterministic per epoch, for exact resume) and whole validation
    utterances, one per batch."""
    cache.check_speakers(cfg.teacher.speakers)
    train = SegmentDataset(cache, "train", segment_length=cfg.data.segment_length)
    per_epoch = cfg.data.batch_size * processes * cfg.train.grad_accum
    train.repeat = max(1, math.ceil(per_epoch / len(train.rows)))
    collate = Collate(cache.audio.hop_length, train.silence)
    train_loader = DataLoader(
        train,
        batch_size=cfg.data.batch_size,
        sampler=EpochSampler(train, seed=cfg.train.seed),
        collate_fn=collate,
        num_workers=cfg.data.num_workers,
        drop_last=True,
    )
    valid = SegmentDataset(cache, "valid", segment_length=None)
    valid_loader = DataLoader(valid, batch_size=1, collate_fn=collate)
    return train_loader, valid_loader


def make_teacher_trainer(
    cfg: Config, dump_dir: str | Path, run_dir: str | Path, *, cpu: bool = False
) -> Trainer:
    """A :class:`Trainer` for the teacher on a feature cache (model initialised from the seed)."""
    from accelerate import PartialState
    from accelerate.utils import set_seed

    cache = FeatureCache(dump_dir, cfg.audio)
    set_seed(cfg.train.seed)
    model = build_teacher(cfg)
    train_loader, valid_loader = make_loaders(cfg, cache, PartialState(cpu=cpu).num_processes)
    if len(train_loader) == 0:
        raise DataError(f"{dump_dir}: too few training segments for one batch")
    return Trainer(
        task=TeacherTask(),
        model=model,
        train_loader=train_loader,
        valid_loader=valid_loader,
        optim=cfg.optim,
        train=cfg.train,
        run_dir=run_dir,
        cpu=cpu,
    )


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

    With ``resume`` the newest checkpoint in ``run_dir`` is continued. The export
    (``run_dir/export``, EMA weights) is written when ``train.max_steps`` is reached.
    """
    trainer = make_teacher_trainer(cfg, dump_dir, run_dir, cpu=cpu)
    args = teacher_args(cfg)
    return fit_and_export(
        trainer, cfg, run_dir, kind="teacher", model_args=args, resume=resume, progress=progress
    )


def fit_and_export(
    trainer: Trainer,
    cfg: Config,
    run_dir: str | Path,
    *,
    kind: str,
    model_args: dict[str, Any],
    extra: dict[str, Any] | None = None,
    resume: bool = True,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> Path:
    """What every training run does around its trainer: write the resolved config, resume from
    the newest checkpoint (with ``resume``), train to ``train.max_steps``, and write the
    inference export ``run_dir/export`` (EMA weights; ``extra`` plus the step count in its
    description) from the main process. Returns the export's path."""
    run_dir = Path(run_dir)
    if trainer.accelerator.is_main_process:
        save_config(cfg, run_dir / "config.yaml")
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        trainer.load_checkpoint(checkpoint)
    trainer.fit(progress)
    export = run_dir / "export"
    if trainer.accelerator.is_main_process:
        save_export(
            trainer.averaged_model(),
            export,
            kind=kind,
            model_args=model_args,
            cfg=cfg,
            extra={"steps": trainer.progress.step, **(extra or {})},
        )
    trainer.accelerator.wait_for_everyone()
    return export


@torch.no_grad()
def evaluate_teacher(
    model: WaveNet, cache: FeatureCache, split: str = "test"
) -> list[dict[str, Any]]:
    """Per-utterance held-out NLL: rows of ``{"id", "samples", "bits"}``."""
    if dataclasses.asdict(cache.audio) != dataclasses.asdict(model.audio):
        raise DataError(f"{cache.root}: features were made with other settings than the model's")
    ds = SegmentDataset(cache, split, segment_length=None)
    device = next(model.parameters()).device
    rows = []
    for i in range(len(ds.rows)):
        item = ds[i]
        speaker = torch.tensor([item["speaker"]], device=device) if "speaker" in item else None
        lp = model.log_prob(item["audio"][None].to(device), item["mel"][None].to(device), speaker)
        rows.append({"id": item["id"], "samples": lp.shape[-1], "bits": float(-lp.mean()) / LN2})
    return rows


def mean_bits(rows: list[dict[str, Any]]) -> float:
    """Sample-weighted mean of :func:`evaluate_teacher`'s per-utterance bits per sample."""
    return sum(r["bits"] * r["samples"] for r in rows) / sum(r["samples"] for r in rows)
