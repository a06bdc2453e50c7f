"""What every training run does around its task: data loaders over a feature cache, batches on
the device, the mask of real samples, and the run itself (resolved config, resume, fit, export).

The teacher (:mod:`pwavenet.train.teacher`) and the distillation (:mod:`pwavenet.train.distill`)
both run through these, so neither task module imports the other.
"""

from __future__ import annotations

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
from .checkpoints import resume_point
from .exports import ExportRecipe
from .lifecycle import init_processes, peers_watched
from .monitor import PitchMonitor
from .trainer import Trainer

__all__ = ["fit_and_export", "make_loaders", "make_trainer", "sample_mask", "to_device"]


def sample_mask(batch: dict[str, Any], steps: int) -> torch.Tensor:
    """``(B, T)`` float mask of the real (unpadded) samples of a collated batch."""
    t = torch.arange(steps, device=batch["audio"].device)
    return (t[None, :] < batch["lengths"].to(t.device)[:, None]).float()


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


def make_trainer(
    cfg: Config,
    cache: FeatureCache,
    run_dir: str | Path,
    *,
    task: Any,
    model: nn.Module,
    cpu: bool = False,
) -> Trainer:
    """A :class:`Trainer` of ``model`` by ``task`` on the cache's training and validation
    splits, with loaders sized for the processes accelerate runs."""
    processes = init_processes(cpu, cfg.train.collective_timeout).num_processes
    train_loader, valid_loader = make_loaders(cfg, cache, processes)
    if len(train_loader) == 0:
        raise DataError(f"{cache.root}: too few training segments for one batch")
    return Trainer(
        task=task,
        model=model,
        train_loader=train_loader,
        valid_loader=valid_loader,
        optim=cfg.optim,
        train=cfg.train,
        run_dir=run_dir,
        cpu=cpu,
        monitor=PitchMonitor.for_cache(cache, cfg.train),
    )


def fit_and_export(
    trainer: Trainer,
    cfg: Config,
    run_dir: str | Path,
    *,
    dump_dir: str | Path,
    kind: str,
    model_args: dict[str, Any],
    extra: dict[str, Any] | None = None,
    resume: bool = True,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> Path:
    """What every training run does around its trainer: write the resolved config, resume from
    the newest intact checkpoint (with ``resume``; newer damaged ones are named in a warning and
    skipped), train to ``train.max_steps``, and keep the inference export ``run_dir/export``
    (EMA weights; ``extra``, the step count and, for a corpus with speakers, its ``{name: id}``
    table from ``dump_dir`` in its description) written from the main process at every
    checkpoint and at the end. Returns the export's path."""
    run_dir = Path(run_dir)
    record = {**_speaker_record(dump_dir), **(extra or {})}
    trainer.recipe = ExportRecipe(kind=kind, model_args=model_args, cfg=cfg, extra=record)
    if trainer.accelerator.is_main_process:
        save_config(cfg, run_dir / "config.yaml")
    checkpoint = resume_point(run_dir) if resume else None
    # A process that dies while the others load, train or export stops them with one line.
    with peers_watched(trainer.accelerator, run_dir, lambda: trainer.progress.step):
        if checkpoint is not None:
            trainer.load_checkpoint(checkpoint)
        trainer.fit(progress)
        if trainer.exported_step != trainer.progress.step:  # no checkpoint wrote it at this step
            trainer.refresh_export()
    return run_dir / "export"


def _speaker_record(dump_dir: str | Path) -> dict[str, Any]:
    """``{"speakers": {name: id}}`` of a corpus with speakers (what ``synthesize --speaker NAME``
    resolves names with), and ``{"mels": {...}}`` when its mels came from files
    (``preprocess --mels``); else nothing."""
    cache = FeatureCache(dump_dir)
    record: dict[str, Any] = {"speakers": cache.speakers} if cache.speakers else {}
    if cache.mel_source["source"] != "computed":
        record["mels"] = cache.mel_source
    return record
