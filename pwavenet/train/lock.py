"""One run folder, one writer: the lock file ``<run>/train.lock``.

A training run holds the lock from before it writes anything in its folder until it ends
(normally, on an error, or on a signal), so two runs started on the same folder never interleave
checkpoints: the second refuses with one line naming the first. The lock is created with
``O_CREAT | O_EXCL`` (two processes never both create it) and holds its owner as JSON: host,
pid, the machine's boot id and the process's start time.

A lock whose owner is gone is *stale*, and taken over with a warning: on the same host, when its
pid is not alive, when the pid now belongs to a later process (another start time), or when the
machine has rebooted since (another boot id); an empty or unreadable lock older than
:data:`UNREADABLE_STALE_AFTER` (its writer died while writing it). A lock from another host cannot
be checked from here: it is refused with a line saying how to remove it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import PwavenetError

logger = logging.getLogger(__name__)

__all__ = ["LOCK_NAME", "Owner", "RunLockedError", "acquire", "held", "release", "release_all"]

LOCK_NAME = "train.lock"
UNREADABLE_STALE_AFTER = 10.0  # seconds; a live writer fills its lock within microseconds

_HELD: dict[Path, Owner] = {}  # the locks this process holds (released on a hard exit too)


class RunLockedError(PwavenetError):
    """The run folder is locked by another training run (or its lock cannot be created)."""


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def _boot_id() -> str:
    """The kernel's boot id ("" where the system does not tell)."""
    return _read_text("/proc/sys/kernel/random/boot_id").strip()


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the name (state first), [] where unknown."""
    stat = _read_text(f"/proc/{pid}/stat")
    return stat.rpartition(")")[2].split()  # the name, in parentheses, may hold spaces


def _start_time(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot ("" where unknown)."""
    fields = _stat(pid)
    return fields[19] if len(fields) > 19 else ""  # field 22 of proc(5), counted after the name


@dataclass(frozen=True)
class Owner:
    """Who holds a lock: enough to tell, on its own host, whether that process still runs."""

    host: str
    pid: int
    boot: str = ""
    start: str = ""

    @classmethod
    def this_process(cls) -> Owner:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, _boot_id(), _start_time(pid))

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"

    def gone(self) -> str | None:
        """Why this owner (on this host) no longer runs, or None when it may still run."""
        if self.boot and self.boot != _boot_id():
            return "the machine has restarted since"
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return "that process has ended"
        except PermissionError:
            pass  # alive, another user's
        if _stat(self.pid)[:1] in (["Z"], ["X"]):  # ended, not yet reaped by its parent
            return "that process has ended"
        if self.start and _start_time(self.pid) not in ("", self.start):
            return "that pid now belongs to another process"
        return None


def _read_owner(path: Path) -> Owner | None:
    """The lock's owner, or None when the lock is empty or unreadable."""
    return _parse(_read_text(str(path)))


def _parse(text: str) -> Owner | None:
    try:
        data = json.loads(text)
        return Owner(str(data["host"]), int(data["pid"]), str(data["boot"]), str(data["start"]))
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class _Found:
    """An existing lock file as read through one descriptor: its owner, inode and age."""

    owner: Owner | None
    inode: int
    age: float


def _find(path: Path) -> _Found | None:
    """The lock at ``path``, or None when there is none (any more)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            st = os.fstat(f.fileno())
            text = f.read()
    except FileNotFoundError:
        return None
    return _Found(_parse(text), st.st_ino, time.time() - st.st_mtime)


def _stale(path: Path, found: _Found) -> str:
    """Why the existing lock ``path`` is stale; a :class:`RunLockedError` when it is held."""
    owner = found.owner
    if owner is None:
        if found.age >= UNREADABLE_STALE_AFTER:
            return "it is empty or unreadable: its writer died while writing it"
        raise RunLockedError(
            f"{path}: another training run is locking this run folder (unreadable lock, "
            f"{found.age:.0f} s old); if none runs, remove {path}"
        )
    if owner.host != socket.gethostname():
        raise RunLockedError(
            f"{path.parent}: another training run holds this run folder ({owner}); if you know "
            f"it is dead, remove {path}"
        )
    why = owner.gone()
    if why is None:
        raise RunLockedError(
            f"{path.parent}: another training run holds this run folder ({owner}, lock {path}); "
            "stop it first, or train into another --out"
        )
    return why


def _take_over(path: Path, found: _Found, why: str) -> None:
    """Remove the stale lock ``path``, unless another process replaced it since it was read
    (then it is put back, and the caller looks again)."""
    aside = path.with_name(f".{LOCK_NAME}.stale-{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # another process took it over first
    if aside.stat().st_ino != found.inode:  # a fresh lock replaced the stale one: put it back
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
        aside.unlink()
        return
    aside.unlink()
    logger.warning("%s: stale lock of %s taken over (%s)", path, found.owner or "nobody", why)


def acquire(run_dir: str | Path) -> Path:
    """Create ``<run_dir>/train.lock`` for this process (taking over a stale one); a one-line
    :class:`RunLockedError` when another live run holds it or it cannot be created."""
    run_dir = Path(run_dir)
    path = run_dir / LOCK_NAME
    me = Owner.this_process()
    for _ in range(5):
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            found = _find(path)
            if found is not None:
                _take_over(path, found, _stale(path, found))
            continue
        except OSError as exc:
            raise RunLockedError(f"{path}: cannot create the run's lock ({exc.strerror})") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(asdict(me)) + "\n")
            f.flush()
            os.fsync(f.fileno())
        _HELD[path] = me
        return path
    raise RunLockedError(f"{path}: could not take the lock (other processes keep taking it)")


def release(path: Path) -> None:
    """Remove a lock this process holds (left alone when another process owns it now)."""
    me = _HELD.pop(path, None)
    if me is not None and _read_owner(path) == me:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def release_all() -> None:
    """Remove every lock this process holds (before a hard exit)."""
    for path in list(_HELD):
        release(path)


@contextmanager
def held(run_dir: str | Path) -> Iterator[Path]:
    """Hold the run folder's lock for the block (one process; see
    :func:`pwavenet.train.lifecycle.exclusive_run` for several)."""
    path = acquire(run_dir)
    try:
        yield path
    finally:
        release(path)
