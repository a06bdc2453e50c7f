"""The pitch monitor: scored from what the model synthesizes, bounded in time, logged by both
training tasks and drawn in the report's curves."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from training_setup import make_dump, tiny_config

from pwavenet.config import AudioConfig
from pwavenet.data.cache import FeatureCache
from pwavenet.eval.curves import default_keys, read_log
from pwavenet.train.distill import train_student
from pwavenet.train.monitor import PitchMonitor, Snippet, pick_snippet
from pwavenet.train.teacher import train_teacher
from pwavenet.train.trainer import reset_accelerate

RATE, HOP = 8000, 64
AUDIO = AudioConfig(sample_rate=RATE, n_fft=256, hop_length=HOP, win_length=256, n_mels=20)
MONITORED = ("valid/voiced_recall", "valid/loudness_db", "valid/mrstft", "valid/monitor_seconds")


class Echo(nn.Module):
    """A stand-in vocoder whose synthesis is a given signal: what the monitor scores."""

    def __init__(self, audio: torch.Tensor) -> None:
        super().__init__()
        self.audio = audio
        self.anchor = nn.Parameter(torch.zeros(1))  # the monitor reads the device from here
        self.calls = 0

    def synthesize(self, mel, *, speaker=None, generator=None):
        self.calls += 1
        assert mel.shape[0] == 1 and isinstance(generator, torch.Generator)
        return self.audio[None]


def voiced(seconds: float = 1.0, f0: float = 140.0) -> torch.Tensor:
    """A buzz with a vowel-like spectrum: the harmonics of ``f0`` falling off with frequency."""
    t = np.arange(int(seconds * RATE)) / RATE
    wav = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 20) if k * f0 < RATE / 2)
    return torch.from_numpy(0.3 * wav / np.abs(wav).max()).float()


def monitor_for(reference: torch.Tensor) -> PitchMonitor:
    frames = reference.shape[-1] // HOP
    snippet = Snippet("ref", torch.zeros(AUDIO.n_mels, frames), reference[: frames * HOP])
    return PitchMonitor(snippet, AUDIO, budget=0.1)


def test_a_voiced_reference_scored_against_itself_is_perfect():
    reference = voiced()
    monitor = monitor_for(reference)
    metrics, wav = monitor(Echo(monitor.snippet.audio))
    assert metrics["voiced_recall"] == 1.0
    assert metrics["f0_rmse"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["loudness_db"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["mrstft"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["monitor_seconds"] > 0 and torch.equal(wav, monitor.snippet.audio)


def test_noise_is_not_voiced():
    monitor = monitor_for(voiced())
    noise = 0.3 * torch.randn(
        monitor.snippet.audio.shape, generator=torch.Generator().manual_seed(0)
    )
    metrics, _ = monitor(Echo(noise))
    assert metrics["voiced_recall"] == 0.0
    assert "f0_rmse" not in metrics  # undefined without frames voiced in both: left out
    assert metrics["mrstft"] > 1.0 and math.isfinite(metrics["loudness_db"])


def test_another_pitch_shows_in_the_f0_error():
    monitor = monitor_for(voiced(f0=140.0))
    metrics, _ = monitor(Echo(voiced(f0=160.0)))
    assert metrics["voiced_recall"] > 0.9
    assert 12.0 < metrics["f0_rmse"] < 28.0  # 20 Hz apart


def test_the_budget_bounds_the_monitors_share_of_training_time():
    monitor = monitor_for(voiced())
    assert monitor.due(train_seconds=0.0)  # the first run measures the cost
    monitor.spent = monitor.last_cost = 2.0
    assert not monitor.due(train_seconds=30.0)  # 2 + 2 > 0.1 * 30
    assert monitor.due(train_seconds=40.0)  # 2 + 2 <= 0.1 * 40
    assert monitor.due(train_seconds=0.0, last=True)  # the last validation always runs


def test_the_snippet_is_a_voiced_held_out_opening(tmp_path):
    dump = make_dump(tmp_path)
    cache = FeatureCache(dump)
    snippet = pick_snippet(cache, 0.5)
    valid = {r["id"] for r in cache.entries("valid")}
    assert snippet.id in valid
    assert snippet.mel.shape == (20, round(0.5 * RATE / HOP))
    assert snippet.audio.shape == (snippet.mel.shape[-1] * HOP,)
    assert pick_snippet(cache, 0.0) is None


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_both_tasks_log_the_monitor_and_the_report_draws_it(tmp_path):
    dump = make_dump(tmp_path)
    teacher = train_teacher(
        tiny_config("train.max_steps=4", "train.valid_every=2"), dump, tmp_path / "t", cpu=True
    )
    reset_accelerate()
    student_cfg = tiny_config(f"distill.teacher={teacher}", "train.max_steps=2")
    train_student(student_cfg, dump, tmp_path / "s", cpu=True)
    for run, steps in ((tmp_path / "t", {2, 4}), (tmp_path / "s", {2})):
        rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        monitored = [r for r in rows if "valid/voiced_recall" in r]
        logged = {r["step"] for r in monitored}
        assert logged <= steps and max(steps) in logged  # the last always; others within budget
        for row in monitored:
            assert all(k in row and math.isfinite(row[k]) for k in MONITORED)
            assert 0.0 <= row["valid/voiced_recall"] <= 1.0
        keys = default_keys({run.name: read_log(run)})
        assert {"voiced_recall", "mrstft", "loudness_db"} <= set(keys)  # panels of the report
        assert "monitor_seconds" not in keys  # its cost is logged, not drawn
