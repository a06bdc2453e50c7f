"""Training checkpoints on disk: listing, integrity, atomic writing and pruning.

A checkpoint is the folder ``<run>/checkpoints/step-00000123/``: accelerate's state (model,
optimizer and RNG states, as safetensors and torch zip archives), ``trainer.json`` (step,
counters), ``ema.safetensors`` (the Polyak weights, with EMA on), ``config.yaml`` and
``export.json`` (what an inference export of it is: see :mod:`pwavenet.train.exports`), and
``manifest.json`` (the size of every file), written last.

A checkpoint is written under ``.tmp-step-…``, flushed to disk and renamed when complete, so a
crash or a full disk never leaves a checkpoint that looks whole. One damaged afterwards (a
truncated copy, a disk that lost unflushed data) is found by :func:`checkpoint_problem` without
unpickling anything: sizes against the manifest, safetensors headers, the zip directories of
torch archives. A damaged checkpoint is named in a warning and skipped at every resume; it is
never pruned, and never counted among the ``keep_checkpoints`` newest.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError, safe_open

from ..errors import TrainingError
from ..fileio import write_json

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_RE",
    "agree",
    "checkpoint_problem",
    "checkpoint_step",
    "find_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "resume_point",
    "staged_checkpoint",
    "write_cause",
]

CHECKPOINT_RE = re.compile(r"^step-(\d{8})$")
MANIFEST, MANIFEST_FORMAT = "manifest.json", "pwavenet-checkpoint/1"
# What writing a checkpoint raises when a file cannot be written whole (a full disk, a lost
# mount): OSError from Python, SafetensorError from safetensors, RuntimeError from torch.save.
WRITE_ERRORS = (OSError, RuntimeError, SafetensorError)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Every checkpoint folder of a run, intact or not, oldest first."""
    root = Path(run_dir) / "checkpoints"
    return sorted(p for p in root.glob("step-*") if CHECKPOINT_RE.match(p.name) and p.is_dir())


def checkpoint_step(path: Path) -> int:
    """The step of a checkpoint folder, from its name."""
    return int(path.name.removeprefix("step-"))


def checkpoint_problem(path: str | Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from (a phrase naming the file), or None when
    it is intact. Reads sizes, headers and zip directories only; unpickles nothing."""
    path = Path(path)
    try:
        return _problem(path)
    except OSError as exc:
        return f"{exc.filename or path}: {exc.strerror or exc}"


def _problem(path: Path) -> str | None:
    try:
        step = json.loads((path / "trainer.json").read_text(encoding="utf-8"))["step"]
    except FileNotFoundError:
        return "no trainer.json"
    except (ValueError, KeyError, TypeError):
        return "trainer.json: unreadable"
    if CHECKPOINT_RE.match(path.name) and step != checkpoint_step(path):
        return f"trainer.json: step {step} in a folder named {path.name}"
    if (path / MANIFEST).is_file():
        try:
            sizes = json.loads((path / MANIFEST).read_text(encoding="utf-8"))["files"]
        except (ValueError, KeyError, TypeError):
            return f"{MANIFEST}: unreadable"
        for name, size in sizes.items():
            if not (path / name).is_file():
                return f"{name}: missing"
            if (found := (path / name).stat().st_size) != size:
                return f"{name}: {found} bytes where {size} were written (truncated)"
    for file in sorted(path.iterdir()):
        if file.suffix == ".safetensors":
            try:
                with safe_open(str(file), framework="pt"):
                    pass
            except SafetensorError as exc:
                return f"{file.name}: {str(exc).splitlines()[0]}"
        elif file.suffix in (".bin", ".pkl", ".pt") and not zipfile.is_zipfile(file):
            return f"{file.name}: not a whole torch archive"
    return None


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest intact checkpoint of a run, or None."""
    for path in reversed(list_checkpoints(run_dir)):
        if checkpoint_problem(path) is None:
            return path
    return None


def resume_point(run_dir: str | Path) -> Path | None:
    """The checkpoint to resume a run from: the newest intact one, after a warning naming each
    newer damaged one (left in place). None for a run without checkpoints; a
    :class:`TrainingError` when none is intact."""
    found = list_checkpoints(run_dir)
    damaged = []
    for path in reversed(found):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        logger.warning("%s: damaged checkpoint skipped (%s)", path, problem)
        damaged.append(f"{path.name}: {problem}")
    if found:
        raise TrainingError(
            f"{Path(run_dir) / 'checkpoints'}: no intact checkpoint to resume from "
            f"({'; '.join(damaged)}); move them away or start afresh with --no-resume"
        )
    return None


def find_checkpoint(run_dir: str | Path, step: int | None = None) -> Path:
    """The intact checkpoint of ``step`` (default: the newest intact one); a one-line
    :class:`TrainingError` when it is missing or damaged."""
    run_dir = Path(run_dir)
    found = list_checkpoints(run_dir)
    if not found:
        raise TrainingError(f"{run_dir}: not a training run with checkpoints (no checkpoints/)")
    if step is None:
        path = latest_checkpoint(run_dir)
        if path is None:
            raise TrainingError(f"{run_dir / 'checkpoints'}: no intact checkpoint")
        return path
    path = run_dir / "checkpoints" / f"step-{step:08d}"
    if path not in found:
        have = ", ".join(str(checkpoint_step(p)) for p in found)
        raise TrainingError(f"{path}: no such checkpoint (steps kept: {have})")
    problem = checkpoint_problem(path)
    if problem is not None:
        raise TrainingError(f"{path}: damaged checkpoint ({problem})")
    return path


def write_cause(exc: BaseException) -> str:
    """The one-line cause of a failed write: ``No space left on device`` for a full disk."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def agree(acc: Accelerator, cause: str | None) -> str | None:
    """Collective (every process calls it): this process's failure ``cause``, a placeholder
    when another process failed, or None when every process succeeded."""
    failed = torch.tensor([float(cause is not None)], device=acc.device)
    if acc.reduce(failed, "max").item() > 0:
        return cause or "failed on another process"
    return None


@contextmanager
def staged_checkpoint(acc: Accelerator, final: Path, keep: int) -> Iterator[Path]:
    """Yield the temporary folder where every process writes its part of checkpoint ``final``
    (collective). When all wrote theirs, the main process adds the manifest, flushes the files
    to disk, renames the folder to ``final`` (a damaged checkpoint of that name is set aside,
    not deleted) and prunes all but the ``keep`` newest intact checkpoints. A write that fails
    on any process (a full disk) removes the temporary folder, leaves the earlier checkpoints
    as they were and raises a one-line :class:`TrainingError` naming ``final`` and the cause on
    every process."""
    tmp = final.with_name(f".tmp-{final.name}")
    if acc.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    acc.wait_for_everyone()
    cause = None
    try:
        yield tmp
    except WRITE_ERRORS as exc:
        cause = write_cause(exc)
    cause = agree(acc, cause)
    if cause is None and acc.is_main_process:
        try:
            _publish(tmp, final)
        except OSError as exc:
            cause = write_cause(exc)
    cause = agree(acc, cause)
    if cause is not None:
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise TrainingError(
            f"{final}: cannot write the checkpoint ({cause}); the earlier checkpoints are kept"
        )
    if acc.is_main_process:
        _prune(final, keep)


def _publish(tmp: Path, final: Path) -> None:
    """Manifest, flush, rename: ``tmp`` becomes the complete checkpoint ``final``."""
    files = sorted(p for p in tmp.iterdir() if p.is_file())
    sizes = {p.name: p.stat().st_size for p in files}
    write_json(tmp / MANIFEST, {"format": MANIFEST_FORMAT, "files": sizes})
    for path in [*files, tmp / MANIFEST]:
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    _fsync_dir(tmp)
    if final.exists():
        problem = checkpoint_problem(final)
        if problem is None:
            shutil.rmtree(final)
        else:
            aside = _free_name(final.with_name(f"{final.name}.damaged"))
            final.rename(aside)
            logger.warning("%s: damaged checkpoint (%s) kept as %s", final, problem, aside.name)
    tmp.rename(final)
    _fsync_dir(final.parent)


def _prune(final: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest intact checkpoints (never ``final``, never a damaged
    one: those stay for the user to look at)."""
    intact = [p for p in list_checkpoints(final.parent.parent) if checkpoint_problem(p) is None]
    for stale in intact[: max(len(intact) - keep, 0)]:
        if stale != final:
            shutil.rmtree(stale, ignore_errors=True)


def _free_name(path: Path) -> Path:
    """``path``, or ``path.1``, ``path.2``, ... : the first that does not exist."""
    n, out = 0, path
    while out.exists():
        n += 1
        out = path.with_name(f"{path.name}.{n}")
    return out


def _fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename) to disk, where the system allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
