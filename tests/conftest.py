"""Shared test helpers: small deterministic signals written in many file formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from pwavenet.train.trainer import reset_accelerate


def tone(seconds: float, rate: int, freq: float = 220.0, amp: float = 0.5, seed: int = 0):
    """A harmonic tone with a little noise: float32 (T,)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = sum(amp / k * np.sin(2 * np.pi * freq * k * t) for k in (1, 2, 3))
    return (x + 0.01 * rng.standard_normal(t.shape)).astype(np.float32) / 1.5


def write_audio(path: Path, audio: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, rate, subtype=subtype)
    return path


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def fresh_accelerate_state():
    reset_accelerate()
    yield
    reset_accelerate()
