"""How a training run starts and stops, whatever the machine does to it.

- **Processes.** accelerate's process group is created with a timeout (``train.collective_timeout``
  seconds) on every collective, so a process never waits for ever on another one that died or
  hangs (:func:`init_processes`); the trainer turns such a failed collective into one line
  (:func:`peers_watched`). Under NCCL, torch's watchdog instead ends a process whose collective
  timed out, with its own message, after the same timeout.
- **One writer.** The main process holds the run folder's lock (:mod:`pwavenet.train.lock`) for
  the whole run; a refusal reaches every process (:func:`exclusive_run`).
- **Signals.** SIGTERM and SIGINT (what SLURM, Kubernetes and spot machines send before they stop
  a job, and Ctrl-C) ask the loop to stop at its next step boundary, with a checkpoint, on every
  process at the same step (:class:`StopSignals`). A second signal at least :data:`REPEAT_AFTER`
  seconds after the first exits at once, even from a blocked collective; one sooner is the same
  request (a launcher such as torchrun forwarding the signal it got to its workers, which got it
  too).
- **Process counts.** A checkpoint is resumed by as many processes as wrote it
  (:func:`check_processes`): the global batch, the data order and every process's random state
  depend on that number.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed

from ..errors import TrainingError
from .checkpoints import latest_checkpoint
from .lock import RunLockedError, acquire, release, release_all

if TYPE_CHECKING:
    from accelerate import PartialState

logger = logging.getLogger(__name__)

__all__ = [
    "REPEAT_AFTER",
    "StopSignals",
    "check_processes",
    "end_processes",
    "exclusive_run",
    "init_processes",
    "peers_watched",
    "stop_message",
]

SIGNALS = (signal.SIGTERM, signal.SIGINT)
REPEAT_AFTER = 1.0  # seconds between two signals that mean "stop at once"


def init_processes(cpu: bool, timeout: float) -> PartialState:
    """accelerate's process state; under several processes its process group waits at most
    ``timeout`` seconds in any collective. The first call in a process decides."""
    from accelerate import PartialState

    return PartialState(cpu=cpu, timeout=timedelta(seconds=timeout))


def end_processes() -> None:
    """Destroy the process group, if any: a process that ends without it (after an error, or
    when another ends first) may abort in gloo's threads instead of exiting with its status."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@contextmanager
def exclusive_run(run_dir: str | Path, *, cpu: bool, timeout: float) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block from the main process; when another run holds it,
    every process raises the same one-line :class:`RunLockedError` before writing anything."""
    from accelerate.utils import broadcast_object_list

    state = init_processes(cpu, timeout)
    path, refusal = None, None
    if state.is_main_process:
        try:
            path = acquire(run_dir)
        except RunLockedError as exc:
            refusal = str(exc)
    if state.num_processes > 1:
        refusal = broadcast_object_list([refusal])[0]
    if refusal is not None:
        raise RunLockedError(refusal)
    try:
        yield
    finally:
        if path is not None:
            release(path)


def _ignore(signum: int, frame: Any) -> None:
    """The Python-level handler: the watcher thread does the work, as soon as a signal comes."""


class StopSignals:
    """SIGTERM and SIGINT as requests to stop at the next step boundary, for a ``with`` block.

    The C-level handler writes each signal to a socket that a watcher thread reads, so the
    request is seen at once even while the main thread waits in a collective or a kernel. The
    first signal sets :attr:`signum` (which :meth:`agreed` reduces over the processes); another
    one at least :data:`REPEAT_AFTER` seconds later releases the run's lock and ends the process
    at once with status 128 + its number. Does nothing outside the main thread.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.signum = 0  # the first signal received, 0 for none
        self._first = 0.0
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._old = {s: signal.signal(s, _ignore) for s in SIGNALS}
        self._thread = threading.Thread(target=self._watch, name="pwavenet-signals", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._old:
            return
        for signum, handler in self._old.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._old = {}
        signal.set_wakeup_fd(self._old_fd)
        self._writer.close()  # the watcher reads the end of the stream and returns
        self._thread.join(timeout=5)
        self._reader.close()

    def _watch(self) -> None:
        while True:
            try:
                data = self._reader.recv(64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum in SIGNALS:
                    self._received(signum)

    def _received(self, signum: int) -> None:
        name, now = signal.Signals(signum).name, time.monotonic()
        if not self.signum:
            self.signum, self._first = signum, now
            logger.warning(
                "%s: stopping after this step with a checkpoint (send it again to stop at once)",
                name,
            )
        elif now - self._first >= REPEAT_AFTER:
            logger.error(
                "%s again: stopping at once without a new checkpoint (running the same command "
                "again resumes from the newest in %s)",
                name,
                self.run_dir / "checkpoints",
            )
            release_all()
            os._exit(128 + signum)

    def agreed(self, accelerator: Any) -> int:
        """The signal every process stops for at this step boundary, 0 to go on. Under several
        processes a collective (one number, reduced by max) that every process calls at every
        step: a signal that reached one process stops them all at the same step."""
        if accelerator.num_processes == 1:
            return self.signum
        flag = torch.tensor([float(self.signum)], device=accelerator.device)
        return int(accelerator.reduce(flag, "max").item())


def stop_message(signum: int, step: int, checkpoint: Path, accelerator: Any) -> str:
    """The one line a process stopped by ``signum`` reports."""
    who = ""
    if accelerator.num_processes > 1:
        who = f" (process {accelerator.process_index + 1} of {accelerator.num_processes})"
    return (
        f"{signal.Signals(signum).name} at step {step}: stopped with a checkpoint, {checkpoint}"
        f"{who}; run the same command again to resume"
    )


def _collective_failure(exc: BaseException) -> str | None:
    """The cause of a collective that failed because another process died or stopped
    answering (gloo's and NCCL's errors, the process group's timeout), else None."""
    text = str(exc)
    if not isinstance(exc, torch.distributed.DistError) and "gloo" not in text.lower():
        return None
    line = (text.splitlines() or [type(exc).__name__])[0]
    if line.startswith("[") and "] " in line:  # "[.../gloo/transport/tcp/pair.cc:537] Read ..."
        line = line.split("] ", 1)[1]
    return line.split(". ", 1)[0].rstrip(".")


@contextmanager
def peers_watched(accelerator: Any, run_dir: Path, step: Callable[[], int]) -> Iterator[None]:
    """Turn a collective that failed because another process of the run died or stopped
    answering into a one-line :class:`TrainingError` naming the step and the checkpoint to
    resume from (``step`` gives the step when it happens)."""
    try:
        yield
    except RuntimeError as exc:
        cause = _collective_failure(exc) if accelerator.num_processes > 1 else None
        if cause is None:
            raise
        good = latest_checkpoint(run_dir)
        where = f"resume from {good}" if good else "no checkpoint was written yet"
        raise TrainingError(
            f"{run_dir}: another process of this run died or stopped answering at step "
            f"{step()} ({cause}); stopping ({where} by running the same command again)"
        ) from None


def check_processes(path: Path, processes: int) -> None:
    """Refuse, in one line naming both numbers, a checkpoint written by another number of
    processes than ``processes`` (accelerate writes one ``random_states_<i>.pkl`` each)."""
    written = len(list(path.glob("random_states_*.pkl")))
    if written and written != processes:
        raise TrainingError(
            f"{path}: written by {written} process{'es' if written > 1 else ''}, resumed by "
            f"{processes}: resume it with {written} (the global batch, the data order and the "
            "random states depend on the number of processes)"
        )
