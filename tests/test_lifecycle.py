"""Training on machines that go away: signals stop every process with a checkpoint and the run
resumes exactly, a run folder has one writer, a dead or hung process stops the others with one
line, and a checkpoint is resumed by as many processes as wrote it.

The runs are ``pwavenet train-teacher`` subprocesses on the CPU; several processes are started
the way torchrun starts them (one per rank, gloo rendezvous), so that one rank can be signalled,
stopped or killed on its own. Every process uses one thread: fast on a shared CPU, and the same
arithmetic in every run, which the bitwise comparisons need.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from training_setup import TINY, free_port, make_dump, tiny_config

from pwavenet.cli import main
from pwavenet.errors import ConfigError
from pwavenet.train import lifecycle
from pwavenet.train.checkpoints import checkpoint_problem, checkpoint_step, latest_checkpoint
from pwavenet.train.lock import LOCK_NAME, Owner, RunLockedError, acquire, held, release

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")

FAST = ["train.log_every=1", "train.monitor_seconds=0", "optim.schedule=constant"]


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    return make_dump(tmp_path_factory.mktemp("lifecycle"))


class Runs:
    """Training subprocesses of one test, each with its stderr in a file; whatever still runs
    at the end of the test is killed."""

    def __init__(self, root: Path, dump: Path) -> None:
        self.root, self.dump, self.procs = root, dump, []
        self.errs: dict[int, Path] = {}
        self.seen: dict[Path, int] = {}  # log lines of each run before its latest start

    def start(self, run: Path, *overrides: str, processes: int = 1) -> list[subprocess.Popen]:
        argv = [sys.executable, "-m", "pwavenet", "train-teacher", "--dump", str(self.dump)]
        argv += ["--out", str(run), "--cpu", *TINY, *FAST, *overrides]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        port, started = free_port(), []
        self.seen[run] = len(logged_steps(run))
        for rank in range(processes):
            if processes > 1:
                env = {**env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
                env.update(RANK=str(rank), LOCAL_RANK=str(rank))
                env.update(WORLD_SIZE=str(processes), LOCAL_WORLD_SIZE=str(processes))
            err = self.root / f"{run.name}.{len(self.procs)}.err"
            with open(err, "w") as f:
                proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=f)
            self.errs[proc.pid] = err
            self.procs.append(proc)
            started.append(proc)
        return started

    def stderr(self, proc: subprocess.Popen) -> str:
        return self.errs[proc.pid].read_text()

    def finish(self, proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
        """Exit status and stderr of ``proc`` once it has ended."""
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"still running after {timeout} s:\n{self.stderr(proc)}")
        return proc.returncode, self.stderr(proc)

    def wait_for_step(self, run: Path, step: int, procs: list, timeout: float = 120) -> int:
        """Wait until the run's latest start logs ``step`` or later; returns the step."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in procs:
                if proc.poll() is not None:
                    pytest.fail(f"ended early ({proc.returncode}):\n{self.stderr(proc)}")
            logged = logged_steps(run)[self.seen[run] :]
            if logged and logged[-1] >= step:
                return logged[-1]
            time.sleep(0.05)
        pytest.fail(f"{run}: step {step} not logged within {timeout} s")

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def runs(tmp_path, dump):
    runs = Runs(tmp_path, dump)
    yield runs
    runs.kill_all()


def logged_steps(run: Path) -> list[int]:
    path = run / "log.jsonl"
    steps = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            steps.append(json.loads(line)["step"])
        except (ValueError, KeyError):
            pass  # a line being written
    return steps


def one_line(stderr: str) -> str:
    """The single ``pwavenet:`` line of a command's stderr (and no traceback)."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("pwavenet:")]
    assert len(lines) == 1, stderr
    return lines[0]


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return {
        **{f"model.{k}": v for k, v in load_file(str(checkpoint / "model.safetensors")).items()},
        **{f"ema.{k}": v for k, v in load_file(str(checkpoint / "ema.safetensors")).items()},
    }


STOPPED = re.compile(
    r"SIGTERM at step (\d+): stopped with a checkpoint, (\S+?)(?: \(process (\d) of 2\))?;"
)


@pytest.mark.slow  # three runs, two at once: 25-30 s on 2 busy cores
def test_sigterm_checkpoints_and_the_resumed_run_equals_an_uninterrupted_one(runs, tmp_path):
    run = tmp_path / "stopped"
    (proc,) = runs.start(run, "train.max_steps=400")
    runs.wait_for_step(run, 3, [proc])
    proc.send_signal(signal.SIGTERM)
    status, err = runs.finish(proc)
    assert status == 128 + signal.SIGTERM, err
    step_text, path = STOPPED.search(one_line(err)).group(1, 2)
    step = int(step_text)
    assert 3 <= step < 400
    assert Path(path) == run / "checkpoints" / f"step-{step:08d}"
    assert checkpoint_problem(path) is None
    assert json.loads((Path(path) / "trainer.json").read_text())["step"] == step
    assert not (run / LOCK_NAME).exists()  # released on the way out

    end = f"train.max_steps={step + 3}"  # the schedule is constant: only the length differs
    resumed, straight = runs.start(run, end)[0], runs.start(tmp_path / "straight", end)[0]
    assert runs.finish(resumed)[0] == 0 and runs.finish(straight)[0] == 0
    a = weights(run / "checkpoints" / f"step-{step + 3:08d}")
    b = weights(tmp_path / "straight" / "checkpoints" / f"step-{step + 3:08d}")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    start = weights(Path(path))
    assert any(not torch.equal(a[k], start[k]) for k in a)  # the resumed run did train


@pytest.mark.slow
def test_a_signal_to_one_process_stops_every_process_at_the_same_step(runs, tmp_path):
    run = tmp_path / "run"
    with held(run):  # a run folder held by another run: every process refuses
        for proc in runs.start(run, "train.max_steps=400", processes=2):
            status, err = runs.finish(proc)
            assert status == 1 and "another training run holds this run folder" in one_line(err)
    assert sorted(p.name for p in run.iterdir()) == []

    procs = runs.start(run, "train.max_steps=400", processes=2)
    runs.wait_for_step(run, 2, procs)
    procs[1].send_signal(signal.SIGTERM)  # the second process only
    stopped = []
    for rank, proc in enumerate(procs):
        status, err = runs.finish(proc)
        assert status == 128 + signal.SIGTERM, err
        step, path, process = STOPPED.search(one_line(err)).group(1, 2, 3)
        assert int(process) == rank + 1
        stopped.append((int(step), path))
    assert stopped[0] == stopped[1]
    checkpoint = Path(stopped[0][1])
    assert checkpoint_problem(checkpoint) is None
    assert sorted(p.name for p in checkpoint.glob("random_states_*")) == [
        "random_states_0.pkl",
        "random_states_1.pkl",
    ]  # both processes wrote their part of the checkpoint at that step
    assert not (run / LOCK_NAME).exists()


@pytest.mark.slow
def test_a_dead_or_hung_process_stops_the_others_and_the_run_resumes(
    runs, dump, tmp_path, capsys, caplog
):
    run, timeout = tmp_path / "run", 8
    common = ["train.max_steps=400", "train.save_every=2", f"train.collective_timeout={timeout}"]

    # A hung process (stopped): the other, waiting for it, exits at once on a second SIGTERM.
    procs = runs.start(run, *common, processes=2)
    runs.wait_for_step(run, 3, procs)
    procs[1].send_signal(signal.SIGSTOP)
    procs[0].send_signal(signal.SIGTERM)
    time.sleep(1.5)  # a repeat sooner than this is taken for the same request
    second = time.monotonic()
    procs[0].send_signal(signal.SIGTERM)
    status, err = runs.finish(procs[0], timeout=timeout + 30)
    assert time.monotonic() - second < timeout  # before the collective would time out
    assert status == 128 + signal.SIGTERM and "SIGTERM again: stopping at once" in err, err
    assert "Traceback" not in err and not (run / LOCK_NAME).exists()
    procs[1].kill()

    # A killed process: the other stops at once with one line naming the checkpoint.
    procs = runs.start(run, *common, processes=2)
    runs.wait_for_step(run, 3, procs)
    procs[1].kill()
    started = time.monotonic()
    status, err = runs.finish(procs[0], timeout=timeout + 30)
    line = one_line(err)
    assert status == 1 and "another process of this run died or stopped answering" in line, err
    assert re.search(r"resume from \S+step-\d{8} by running the same command again", line)
    assert time.monotonic() - started < timeout + 20

    # A hung main process: the other waits train.collective_timeout seconds, then stops.
    procs = runs.start(run, *common, processes=2)
    runs.wait_for_step(run, checkpoint_step(latest_checkpoint(run)) + 2, procs)
    procs[0].send_signal(signal.SIGSTOP)
    started = time.monotonic()
    status, err = runs.finish(procs[1], timeout=timeout + 60)
    assert time.monotonic() - started >= timeout - 2  # it waited for the timeout
    line = one_line(err)
    assert status == 1 and f"Timed out waiting {timeout * 1000}ms" in line, err
    assert "another process of this run died or stopped answering" in line
    procs[0].kill()  # the lock's holder dies: its lock is left behind
    procs[0].wait()

    # Resuming with another number of processes is refused (the stale lock taken over first).
    argv = ["train-teacher", "--dump", str(dump), "--out", str(run), "--cpu", *TINY, *common]
    assert main(argv) == 1
    line = one_line(capsys.readouterr().err)
    assert re.search(r"step-\d{8}: written by 2 processes, resumed by 1: resume it with 2", line)
    assert any("stale lock of pid" in r.message for r in caplog.records)

    # Resuming with as many processes finishes the run.
    end = checkpoint_step(latest_checkpoint(run)) + 3
    procs = runs.start(run, *common[1:], f"train.max_steps={end}", processes=2)
    for proc in procs:
        status, err = runs.finish(proc)
        assert status == 0, err
    assert logged_steps(run)[-1] == end and (run / "export").is_dir()
    assert not (run / LOCK_NAME).exists()


def test_sigint_asks_to_stop_and_only_a_later_repeat_exits_at_once(tmp_path, monkeypatch):
    exits: list[int] = []
    monkeypatch.setattr(lifecycle.os, "_exit", exits.append)
    monkeypatch.setattr(lifecycle, "REPEAT_AFTER", 0.3)
    before = signal.getsignal(signal.SIGINT)
    with lifecycle.StopSignals(tmp_path) as signals:
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt: a request to stop
        os.kill(os.getpid(), signal.SIGINT)  # at once: the same request (as a launcher forwards)
        time.sleep(0.5)  # the gap that makes the next one a repeat
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 10
        while not exits and time.monotonic() < deadline:
            time.sleep(0.01)
        assert signals.signum == signal.SIGINT
        assert signals.agreed(SimpleNamespace(num_processes=1)) == signal.SIGINT
    assert exits == [128 + signal.SIGINT]  # the third signal only
    assert signal.getsignal(signal.SIGINT) is before


def test_the_collective_timeout_must_be_positive():
    assert tiny_config().train.collective_timeout == 600
    with pytest.raises(ConfigError, match=r"train.collective_timeout \(0.0\) must be > 0"):
        tiny_config("train.collective_timeout=0")


def lock_of(owner: Owner) -> str:
    return json.dumps(
        {"host": owner.host, "pid": owner.pid, "boot": owner.boot, "start": owner.start}
    )


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_run_folder_held_by_a_live_run_is_refused_and_nothing_is_written(dump, tmp_path, capsys):
    run = tmp_path / "run"
    with held(run) as lock:  # held by this (live) process
        before = lock.read_text()
        status = main(["train-teacher", "--dump", str(dump), "--out", str(run), "--cpu", *TINY])
        assert status == 1
        line = one_line(capsys.readouterr().err)
        assert f"pid {os.getpid()}" in line and str(lock) in line
        assert [p.name for p in run.iterdir()] == [LOCK_NAME] and lock.read_text() == before
    assert not lock.exists()


def test_locks_of_other_hosts_and_unreadable_fresh_locks_are_refused(tmp_path):
    me = Owner.this_process()
    lock = tmp_path / LOCK_NAME
    lock.write_text(lock_of(Owner("elsewhere", me.pid, me.boot, me.start)))
    refusal = rf"pid {me.pid} on elsewhere\); if you know it is dead, remove {re.escape(str(lock))}"
    with pytest.raises(RunLockedError, match=refusal):
        acquire(tmp_path)
    lock.write_text("")  # being written right now
    with pytest.raises(RunLockedError, match="unreadable lock"):
        acquire(tmp_path)
    assert lock.read_text() == ""


def stale_owner(case: str, me: Owner, procs: list) -> Owner | None:
    """A lock owner that is gone, in the way ``case`` says (None: an unreadable lock)."""
    if case == "dead":
        return Owner(me.host, dead_pid(), me.boot, "")
    if case == "zombie":  # ended, not yet reaped by its parent (this test)
        procs.append(subprocess.Popen([sys.executable, "-c", "pass"]))
        os.waitid(os.P_PID, procs[-1].pid, os.WEXITED | os.WNOWAIT)
        return Owner(me.host, procs[-1].pid, me.boot, "")
    if case == "reused":
        return Owner(me.host, me.pid, me.boot, str(int(me.start) + 1))
    if case == "rebooted":
        return Owner(me.host, me.pid, "another-boot", me.start)
    return None


@pytest.mark.parametrize(
    "case, why",
    [
        ("dead", "that process has ended"),
        ("zombie", "that process has ended"),
        ("reused", "that pid now belongs to another process"),
        ("rebooted", "the machine has restarted since"),
        ("unreadable", "empty or unreadable"),
    ],
)
def test_stale_locks_are_taken_over_with_a_warning(tmp_path, caplog, case, why):
    me = Owner.this_process()
    if case in ("zombie", "reused") and not me.start:
        pytest.skip("no /proc process table on this system")
    if case == "rebooted" and not me.boot:
        pytest.skip("no boot id on this system")
    lock, procs = tmp_path / LOCK_NAME, []
    stale = stale_owner(case, me, procs)
    lock.write_text(lock_of(stale) if stale else '{"host": "vm", "pi')
    if stale is None:
        old = time.time() - 60
        os.utime(lock, (old, old))
    path = acquire(tmp_path)
    assert json.loads(path.read_text())["pid"] == me.pid
    assert any("stale lock" in r.message and why in r.message for r in caplog.records)
    release(path)
    assert not lock.exists()
    for proc in procs:
        proc.wait()
