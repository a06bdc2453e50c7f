"""The serving install (docs/serving.md, "A slim install for serving"): synthesis, streaming and
the precision choice run with none of the training and report packages importable."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import soundfile as sf
from test_vocoder import exports  # noqa: F401  (the fixture: a tiny teacher and student export)

# What the serving install leaves out: training (accelerate), the report's figures (matplotlib),
# librosa, and the optional extras.
LEFT_OUT = ("accelerate", "librosa", "matplotlib", "onnx", "onnxruntime", "pesq", "pyworld")

RUN = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {left_out}:
                raise ImportError(f"{{name}} is not installed (slim install)", name=name)

    sys.meta_path.insert(0, Block())
    from pwavenet import cli
    code = cli.main(sys.argv[1:])
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in {left_out})
    assert not loaded, loaded
    sys.exit(code)
    """
)


def _pwavenet(*args: str) -> subprocess.CompletedProcess:
    script = RUN.format(left_out=set(LEFT_OUT))
    return subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300
    )


def test_synthesis_and_streaming_need_no_training_or_report_packages(exports, tmp_path):  # noqa: F811
    mel = np.random.default_rng(0).standard_normal((4, 12)).astype(np.float32) - 4
    np.save(tmp_path / "m.npy", mel)
    student = str(exports["student"])
    done = _pwavenet("synthesize", student, str(tmp_path / "m.npy"), "--out", str(tmp_path / "o"))
    assert done.returncode == 0, done.stderr
    assert "precision: " in done.stdout
    offline, rate = sf.read(str(tmp_path / "o" / "m.wav"), dtype="int16")
    args = ["synthesize", student, str(tmp_path / "m.npy"), "--stream", "--chunk-frames", "3"]
    done = _pwavenet(*args, "--out", str(tmp_path / "s.wav"))
    assert done.returncode == 0, done.stderr
    streamed, _ = sf.read(str(tmp_path / "s.wav"), dtype="int16")
    assert rate == 8000 and len(streamed) == len(offline) == 12 * 16
    assert np.abs(streamed.astype(int) - offline).max() <= 1
