"""Long inputs: synthesizing and evaluating a 60 s utterance stays within a bounded memory.

Each command runs in a fresh process; its peak resident set size is what the README states
(measured with ``python tools/long_input_memory.py``). The exports are small, with the real
feature size (80 mel bands, hop 256, 16 kHz): memory over a long utterance scales with its
features and samples, not with the weights. Before the teacher read its conditioning a window at
a time, its synthesis of 60 s peaked at 5.5 GB (the mel upsampler's arrays at full length)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import long_input_memory as lim

# Bounds in MiB (the README's measured peaks are 534, 815 and 627).
BOUNDS = {"synthesize (teacher)": 1024, "synthesize (student)": 1536, "evaluate": 1024}


@pytest.mark.slow
def test_a_60_second_utterance_stays_within_bounded_memory(tmp_path):
    teacher, student = lim.small_exports(tmp_path / "exports")
    rows = {
        r["command"]: r["peak RSS (MiB)"] for r in lim.measure(teacher, student, 60.0, tmp_path)
    }
    for command, bound in BOUNDS.items():
        peak = next(v for k, v in rows.items() if k.startswith(command))
        assert 0 < peak <= bound, (command, peak, bound)
    for kind in ("teacher", "student"):
        (wav,) = (tmp_path / kind).glob("*.wav")
        assert wav.stat().st_size > 60 * 16000 * 2  # 60 s of 16-bit samples were written
