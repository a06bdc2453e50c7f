"""One generic training loop on HuggingFace accelerate, for the teacher and for distillation.

What differs between trainings lives in a small *task* object (:class:`Task`): it computes
``(loss, metrics)`` for a batch and validation metrics for a model. The loop owns everything
else: ``prepare``, gradient accumulation, autocast, clipping, the learning-rate schedule, Polyak
(EMA) weights, non-finite-loss handling, periodic validation, logging, and atomic checkpoints
that resume exactly. Under several processes the logged training metrics are their means over
the processes, and validation is sharded across them (:mod:`pwavenet.train.collective`).

Checkpoint layout (``<run>/checkpoints/step-000123/``): accelerate's state (model, optimizer,
scheduler, RNG) plus ``trainer.json`` (step, counters) and ``ema.safetensors``. A checkpoint is
written under a temporary name and renamed when complete, so a crash or a full disk never leaves
a checkpoint that looks whole; the newest ``keep_checkpoints`` intact ones are kept, and a
damaged one is skipped, never deleted (:mod:`pwavenet.train.checkpoints`). With an export
recipe (set by :func:`pwavenet.train.runs.fit_and_export`) every checkpoint also refreshes the
run's inference export ``<run>/export``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import OptimConfig, TrainConfig
from ..errors import PwavenetError, Stopped, TrainingError
from ..fileio import write_json
from .checkpoints import agree, checkpoint_problem, latest_checkpoint, staged_checkpoint
from .collective import Totals, mean_over_processes, validate
from .lifecycle import StopSignals, check_processes, init_processes, peers_watched, stop_message
from .optim import EMA, clip_threshold, lr_lambda

if TYPE_CHECKING:
    from .exports import ExportRecipe
    from .monitor import PitchMonitor

logger = logging.getLogger(__name__)

__all__ = [
    "EMA",
    "Task",
    "Trainer",
    "TrainingError",
    "latest_checkpoint",
    "lr_lambda",
    "reset_accelerate",
]

# Logged metrics equal on every process, left out of the mean over processes: the gradient norm
# is that of the synchronised (already averaged) gradients, the learning rate a function of the
# step.
SAME_ON_EVERY_PROCESS = ("grad/norm", "lr")


def reset_accelerate() -> None:
    """Forget accelerate's process-wide state, so that the next trainer in this process starts
    afresh (one process that trains several models: the demo, the tests)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


class Task(Protocol):
    """What a training run computes; the trainer does the rest."""

    def loss(
        self, model: nn.Module, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss (float32) and metrics for logging, namespaced like ``"nll/bits"``; the
        names must be the same on every process (they are averaged over the processes)."""
        ...

    def validation_totals(self, model: nn.Module, batch: dict[str, Any], index: int) -> Totals:
        """Validation of ``model`` (the EMA weights when EMA is on) on one batch, the
        ``index``-th of the validation set whatever the number of processes: per metric a
        ``(sum, weight)`` pair, added over batches and processes (see :func:`validate`)."""
        ...


@dataclass
class _Progress:
    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of this epoch already consumed
    nonfinite_in_row: int = 0
    nonfinite_total: int = 0
    train_seconds: float = 0.0  # optimizer-step wall time over all sessions of the run


class Trainer:
    """Runs a :class:`Task` with accelerate. Construct, then :meth:`fit`.

    ``train_loader`` must iterate deterministically given its epoch (see
    :class:`pwavenet.data.dataset.EpochSampler`), which makes resume exact: the loop skips the
    batches a checkpoint already consumed.
    """

    def __init__(
        self,
        *,
        task: Task,
        model: nn.Module,
        train_loader: torch.utils.data.DataLoader,
        valid_loader: Iterable[dict[str, Any]] | None,
        optim: OptimConfig,
        train: TrainConfig,
        run_dir: str | Path,
        cpu: bool = False,
        monitor: PitchMonitor | None = None,
    ) -> None:
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration, set_seed

        self.task, self.optim_cfg, self.train_cfg = task, optim, train
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        init_processes(cpu, train.collective_timeout)  # before accelerate creates it without
        trackers = "tensorboard" if _has_tensorboard() else None
        self.accelerator = Accelerator(
            cpu=cpu,
            mixed_precision=train.mixed_precision,
            gradient_accumulation_steps=train.grad_accum,
            log_with=trackers,
            project_config=ProjectConfiguration(project_dir=str(self.run_dir)),
        )
        set_seed(train.seed)
        opt_cls = torch.optim.AdamW if optim.weight_decay > 0 else torch.optim.Adam
        optimizer = opt_cls(
            model.parameters(),
            lr=optim.lr,
            betas=tuple(optim.betas),
            weight_decay=optim.weight_decay,
        )
        # The schedule is a pure function of the optimizer step (set on the param groups before
        # each step): nothing to checkpoint, and the same in optimizer steps for any number of
        # processes (accelerate's prepared schedulers count per-process batches instead).
        self.lr_at = lr_lambda(optim, train.max_steps)
        self.model, self.optimizer, self.train_loader = self.accelerator.prepare(
            model, optimizer, train_loader
        )
        self.valid_loader = valid_loader
        self._sampler = getattr(train_loader, "sampler", None)
        self.ema = EMA(self.unwrapped, optim.ema_decay) if optim.ema_decay > 0 else None
        self.progress = _Progress()
        self.monitor = monitor if self.accelerator.is_main_process else None
        self.train_seconds = 0.0  # optimizer-step wall time in this process (the monitor's budget)
        self.recipe: ExportRecipe | None = None  # with one, checkpoints refresh <run>/export
        self.exported_step = -1  # the step <run>/export was last written at by this trainer
        if self.accelerator.is_main_process and trackers:
            self.accelerator.init_trackers("logs")

    # ------------------------------------------------------------------ helpers

    @property
    def unwrapped(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def averaged_model(self) -> nn.Module:
        """The model to validate and export: the EMA weights when EMA is on."""
        return self.ema.copy_to(self.unwrapped) if self.ema else self.unwrapped

    def _batches(self) -> Iterator[dict[str, Any]]:
        """Endless micro-batches; resumes inside an epoch by skipping consumed batches."""
        from accelerate import skip_first_batches

        while True:
            loader = self.train_loader
            if self.progress.batch_in_epoch:
                loader = skip_first_batches(loader, self.progress.batch_in_epoch)
            # accelerate's loaders push their own epoch counter into the sampler when iterated:
            # set it on the loader actually iterated, and on our sampler for plain loaders.
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(self.progress.epoch)
            if hasattr(self._sampler, "set_epoch"):
                self._sampler.set_epoch(self.progress.epoch)
            for batch in loader:
                self.progress.batch_in_epoch += 1
                yield batch
            self.progress.epoch += 1
            self.progress.batch_in_epoch = 0

    def _log(self, metrics: dict[str, float]) -> None:
        if not self.accelerator.is_main_process:
            return
        self.accelerator.log(metrics, step=self.progress.step)
        line = json.dumps({"step": self.progress.step, **metrics})
        with open(self.run_dir / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(line + "\n")

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self) -> Path:
        """Write the full training state atomically, prune old checkpoints, and refresh
        ``<run>/export`` when the trainer has an export recipe (every process calls this)."""
        acc = self.accelerator
        final = self.run_dir / "checkpoints" / f"step-{self.progress.step:08d}"
        with staged_checkpoint(acc, final, self.train_cfg.keep_checkpoints) as tmp:
            acc.save_state(str(tmp), safe_serialization=True)
            if acc.is_main_process:
                write_json(tmp / "trainer.json", self.progress.__dict__)
                if self.ema is not None:
                    save_file(
                        {k: v.contiguous() for k, v in self.ema.shadow.items()},
                        str(tmp / "ema.safetensors"),
                    )
                if self.recipe is not None:
                    self.recipe.write_into(tmp)
        if self.recipe is not None:
            self.refresh_export()
        return final

    def refresh_export(self) -> Path:
        """Write ``<run>/export`` (:meth:`averaged_model`, at this step) from the main process,
        atomically (every process calls this); a failed write leaves the previous export and
        stops with a one-line :class:`TrainingError`."""
        if self.recipe is None:
            raise TrainingError(f"{self.run_dir}: this trainer has no export recipe")
        path, cause = self.run_dir / "export", None
        if self.accelerator.is_main_process:
            try:
                self.recipe.export(self.averaged_model(), path, self.progress.step)
            except PwavenetError as exc:
                cause = str(exc)
        cause = agree(self.accelerator, cause)
        if cause is not None:
            raise TrainingError(f"{cause}; the previous export and the checkpoints are kept")
        self.exported_step = self.progress.step
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint`."""
        path = Path(path)
        meta = path / "trainer.json"
        if not meta.is_file():
            raise TrainingError(f"{path}: not a pwavenet training checkpoint (no trainer.json)")
        problem = checkpoint_problem(path)
        if problem is not None:
            raise TrainingError(f"{path}: damaged checkpoint ({problem})")
        check_processes(path, self.accelerator.num_processes)
        try:
            self.accelerator.load_state(str(path))
        except (RuntimeError, KeyError, ValueError) as exc:
            cause = str(exc).splitlines()[0]
            raise TrainingError(f"{path}: checkpoint does not fit this model ({cause})") from None
        self.progress = _Progress(**json.loads(meta.read_text()))
        if self.ema is not None and (path / "ema.safetensors").is_file():
            self.ema.shadow = load_file(str(path / "ema.safetensors"))
        logger.info("resumed from %s at step %d", path, self.progress.step)

    # ------------------------------------------------------------------ loop

    def fit(
        self,
        progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
        *,
        until: int | None = None,
    ) -> dict[str, float]:
        """Train until ``max_steps`` (or stop early at step ``until``, after checkpointing);
        returns the last logged metrics. SIGTERM or SIGINT stops every process at the next step
        boundary after a checkpoint, raising :class:`Stopped`; a collective that fails because
        another process died or hangs raises a one-line :class:`TrainingError`
        (:mod:`pwavenet.train.lifecycle`)."""
        acc, cfg = self.accelerator, self.train_cfg
        batches = self._batches()
        last: dict[str, float] = {}
        stop = cfg.max_steps if until is None else min(until, cfg.max_steps)
        steps = range(self.progress.step, stop)
        with (
            StopSignals(self.run_dir) as signals,
            peers_watched(acc, self.run_dir, lambda: self.progress.step),
        ):
            for _ in progress(steps) if progress else steps:
                metrics, start = None, time.perf_counter()
                while metrics is None:  # a skipped (non-finite) step is retried with new data
                    metrics = self._optimizer_step(batches)
                spent = time.perf_counter() - start
                self.train_seconds += spent
                self.progress.train_seconds += spent
                step = self.progress.step
                if step % cfg.log_every == 0 or step == cfg.max_steps:  # the same everywhere
                    last = mean_over_processes(acc, metrics, SAME_ON_EVERY_PROCESS)
                    self._log(last)
                if self.valid_loader is not None and (
                    step % cfg.valid_every == 0 or step == cfg.max_steps
                ):
                    valid = {**self.validate(), **self._monitor(last=step == cfg.max_steps)}
                    valid["valid/train_minutes"] = self.progress.train_seconds / 60
                    self._log(valid)
                    last = {**last, **valid}
                saved = None
                if step % cfg.save_every == 0 or step in (cfg.max_steps, stop):
                    saved = self.save_checkpoint()
                signum = signals.agreed(acc)  # collective: every process stops at this step
                if signum and step < stop:
                    saved = saved or self.save_checkpoint()
                    acc.end_training()
                    message = stop_message(signum, step, saved, acc)
                    raise Stopped(message, 128 + signum)
        acc.end_training()
        return last

    def validate(self) -> dict[str, float]:
        """Validation metrics of :meth:`averaged_model`, sharded across the processes (every
        process must call this)."""
        model = self.averaged_model()
        model.eval()
        with torch.no_grad():
            loader = self.valid_loader if self.valid_loader is not None else ()
            metrics = validate(self.task.validation_totals, model, loader, self.accelerator)
        return {f"valid/{k}": v for k, v in metrics.items()}

    def _monitor(self, last: bool) -> dict[str, float]:
        """The pitch monitor's metrics (main process, within its time budget), with the
        snippet's audio sent to TensorBoard when it is installed."""
        if self.monitor is None or not self.monitor.due(self.train_seconds, last):
            return {}
        model = self.averaged_model()
        model.eval()
        metrics, wav = self.monitor(model)
        if self.accelerator.log_with:
            tracker = self.accelerator.get_tracker("tensorboard", unwrap=True)
            rate = self.monitor.audio.sample_rate
            tracker.add_audio("valid/snippet", wav[None], self.progress.step, sample_rate=rate)
        return {f"valid/{k}": v for k, v in metrics.items()}

    def _optimizer_step(self, batches: Iterator[dict[str, Any]]) -> dict[str, float] | None:
        """One optimizer step (``grad_accum`` micro-batches); None if it was skipped."""
        acc, cfg = self.accelerator, self.train_cfg
        self.model.train()
        sums: dict[str, float] = {}
        for micro in range(cfg.grad_accum):
            batch = next(batches)
            self._seed_micro_batch(micro)
            with acc.accumulate(self.model):
                with acc.autocast():
                    loss, metrics = self.task.loss(self.model, batch)
                # any process's non-finite loss skips the step everywhere (accelerate's reduce
                # knows sum, mean and max, not min)
                bad = acc.reduce((~torch.isfinite(loss.detach())).float().reshape(1), "max")
                if bad.item() > 0:
                    self.optimizer.zero_grad(set_to_none=True)
                    return self._skip("loss")
                acc.backward(loss)
                if acc.sync_gradients:
                    limit = clip_threshold(self.optim_cfg)
                    norm = float(acc.clip_grad_norm_(self.model.parameters(), limit))
                    # A non-finite gradient would make every weight NaN: skip the step (under
                    # fp16 the gradient scaler skips such steps itself and lowers its scale).
                    if not math.isfinite(norm) and acc.scaler is None:
                        self.optimizer.zero_grad(set_to_none=True)
                        return self._skip("gradient")
                    sums["grad/norm"] = norm
                    lr = self.optim_cfg.lr * self.lr_at(self.progress.step)
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v) / cfg.grad_accum
        self.progress.step += 1
        self.progress.nonfinite_in_row = 0
        if self.ema is not None:
            self.ema.update(self.unwrapped)
        sums["lr"] = self.optimizer.param_groups[0]["lr"]
        return sums

    def _seed_micro_batch(self, micro: int) -> None:
        """Make the loss's randomness (e.g. a student's noise) a pure function of the seed, the
        step, the micro-batch, the retry and the process: a resumed run then draws what the
        uninterrupted run drew, whatever consumed random numbers in between (a DataLoader
        draws one whenever it starts an epoch)."""
        p, cfg = self.progress, self.train_cfg
        key = (cfg.seed * 1_000_003 + p.step) * 1009 + p.nonfinite_total
        torch.manual_seed((key * 64 + micro) * 4099 + self.accelerator.process_index)

    def _skip(self, what: str) -> None:
        """Count a skipped step (a non-finite ``what``: loss or gradient); stop after
        ``train.max_nonfinite`` in a row, naming the last intact checkpoint."""
        p = self.progress
        p.nonfinite_in_row += 1
        p.nonfinite_total += 1
        logger.warning(
            "non-finite %s at step %d (%d in a row, %d in all): step skipped",
            what,
            p.step,
            p.nonfinite_in_row,
            p.nonfinite_total,
        )
        if p.nonfinite_in_row >= self.train_cfg.max_nonfinite:
            good = latest_checkpoint(self.run_dir)
            where = (
                f"the last good checkpoint is {good}" if good else "no checkpoint was written yet"
            )
            raise TrainingError(
                f"{self.run_dir}: {p.nonfinite_in_row} non-finite losses or gradients in a row "
                f"at step {p.step}; stopping ({where})"
            )
        return None


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True
