"""tools/gpu_check.sh and tools/gpu_check.py: usage errors, stage outcomes and the results folder.

CI runs the whole dry run (``bash tools/gpu_check.sh --dry-run OUT`` in ``.ci/run``); these tests
check the parts that must hold whatever the stages find."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_the_shell_script_needs_a_results_folder():
    done = run("bash", "tools/gpu_check.sh")
    assert done.returncode == 2 and "usage: bash tools/gpu_check.sh" in done.stderr


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_without_cuda_it_refuses_in_one_line(tmp_path):
    done = run(sys.executable, "tools/gpu_check.py", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "gpu_check: torch sees no CUDA device; use --dry-run to check on the CPU"
    ]


def test_unknown_stage_is_a_usage_error(tmp_path):
    done = run(sys.executable, "tools/gpu_check.py", str(tmp_path), "--dry-run", "--stages", "x")
    assert done.returncode == 2 and "unknown stage(s) ['x']" in done.stderr


def test_a_failed_stage_is_recorded_and_the_others_still_run(tmp_path):
    # planning needs the benchmark's results: alone it fails, after the environment stage
    out = tmp_path / "out"
    done = run(
        sys.executable,
        "tools/gpu_check.py",
        str(out),
        "--dry-run",
        "--stages",
        "planning,environment",
    )
    assert done.returncode == 1
    stages = json.loads((out / "stages.json").read_text())
    assert stages["planning"]["ok"] is False and stages["environment"]["ok"] is True
    env = json.loads((out / "environment.json").read_text())
    assert env["dry_run"] is True and env["matmul_gflops_float32"] > 0
    summary = (out / "summary.md").read_text()
    assert "| planning | FAILED |" in summary and "| environment | ok |" in summary
    assert "benchmark.json" in summary  # the failure's cause is in the summary
