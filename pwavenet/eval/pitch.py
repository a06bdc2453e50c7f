"""Pitch: a YIN F0 tracker (no downloaded model) and pitch metrics against a reference.

:func:`f0_track` gives F0 per hop block as the mel frames do; :func:`yin_periodicity` gives
YIN's periodicity of the same frames; :func:`pitch_metrics` gives F0 RMSE in Hz over frames
voiced in both, voiced/unvoiced error, and voiced-frame recall against the reference.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["f0_track", "pitch_metrics", "yin_periodicity"]

_EPS = 1e-10  # floor of energies and of YIN's cumulative difference before a log or a division
_BLOCK = 1024  # frames whose spectra are computed at a time (bounds memory on long signals)
_SILENCE_DBFS = -80.0  # frames below this mean power (dB re full scale) are never voiced


def f0_track(
    audio: Any,
    sample_rate: int,
    hop: int,
    *,
    fmin: float = 60.0,
    fmax: float = 500.0,
    threshold: float = 0.15,
    silence_db: float = -40.0,
) -> np.ndarray:
    """F0 in Hz of every hop block (frame ``j`` centred on samples ``[j hop, (j+1) hop)``, as
    the mel frames), 0 where unvoiced: YIN's cumulative mean normalised difference with an
    absolute threshold and parabolic refinement. Frames quieter than ``silence_db`` below the
    loudest frame, or than -80 dB full scale, are unvoiced. ``(T // hop,)``."""
    cmnd, gate, lag_min, lag_max = _cmnd(audio, sample_rate, hop, fmin, fmax, silence_db)
    f0 = np.zeros(len(gate))
    for j in np.nonzero(gate)[0]:
        below = np.nonzero(cmnd[j, lag_min : lag_max + 1] < threshold)[0]
        if below.size == 0:
            continue
        lag = lag_min + int(below[0])
        while lag + 1 <= lag_max and cmnd[j, lag + 1] < cmnd[j, lag]:
            lag += 1
        shift = 0.0
        if lag_min < lag < lag_max:
            a, b, c = cmnd[j, lag - 1], cmnd[j, lag], cmnd[j, lag + 1]
            denom = a - 2 * b + c
            shift = 0.5 * (a - c) / denom if denom > 0 else 0.0
        f0[j] = sample_rate / (lag + shift)
    return f0


def yin_periodicity(
    audio: Any,
    sample_rate: int,
    hop: int,
    *,
    fmin: float = 60.0,
    fmax: float = 500.0,
    silence_db: float = -40.0,
) -> np.ndarray:
    """YIN's periodicity of the frames of :func:`f0_track`: ``1 - min`` over the lags of
    ``[sample_rate / fmax, sample_rate / fmin]`` of the cumulative mean normalised difference
    (YIN's aperiodicity), clipped to [0, 1]; 0 in the frames the silence gate leaves unvoiced.
    :func:`f0_track` calls a frame voiced exactly when this exceeds ``1 - threshold`` (0.85 by
    default) in a frame the gate passes. ``(T // hop,)``."""
    cmnd, gate, lag_min, lag_max = _cmnd(audio, sample_rate, hop, fmin, fmax, silence_db)
    if not len(gate):
        return np.zeros(0)
    periodic = 1.0 - cmnd[:, lag_min : lag_max + 1].min(axis=1)
    return np.where(gate, np.clip(periodic, 0.0, 1.0), 0.0)


def _cmnd(
    audio: Any, sample_rate: int, hop: int, fmin: float, fmax: float, silence_db: float
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """YIN's cumulative mean normalised difference of every hop block ``(frames, lag_max + 1)``,
    the gate of frames loud enough to be voiced ``(frames,)``, and the lag range."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    lag_min, lag_max = int(sample_rate / fmax), math.ceil(sample_rate / fmin)
    width = lag_max  # integration window
    frames = x.shape[0] // hop
    span = width + lag_max
    centre = np.arange(frames) * hop + hop // 2
    padded = np.pad(x, (span, span))
    starts = centre - width // 2 + span
    cmnd, energy = np.ones((frames, lag_max + 1)), np.zeros(frames)
    for i in range(0, frames, _BLOCK):  # a block of frames at a time: bounded memory
        segs = np.stack([padded[s : s + span] for s in starts[i : i + _BLOCK]])
        cmnd[i : i + len(segs)], energy[i : i + len(segs)] = _cmnd_rows(segs, width, lag_max)
    loud = 10 * np.log10(np.maximum(energy, _EPS))
    gate = (loud > loud.max(initial=-np.inf) + silence_db) & (loud > _SILENCE_DBFS)
    return cmnd, gate, lag_min, lag_max


def _cmnd_rows(segs: np.ndarray, width: int, lag_max: int) -> tuple[np.ndarray, np.ndarray]:
    """The cumulative mean normalised difference ``(n, lag_max + 1)`` and the mean power
    ``(n,)`` of the integration windows of ``segs: (n, width + lag_max)``."""
    n = 1 << math.ceil(math.log2(2 * segs.shape[1]))
    spec_a = np.fft.rfft(segs[:, :width], n)
    spec_b = np.fft.rfft(segs, n)
    acf = np.fft.irfft(np.conj(spec_a) * spec_b, n)[:, : lag_max + 1]
    sq = np.concatenate([np.zeros((len(segs), 1)), np.cumsum(segs**2, axis=1)], axis=1)
    e0 = sq[:, width][:, None]
    lags = np.arange(lag_max + 1)
    e_lag = sq[:, lags + width] - sq[:, lags]
    diff = np.maximum(e0 + e_lag - 2 * acf, 0.0)
    cum = np.cumsum(diff[:, 1:], axis=1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] * lags[1:] / np.maximum(cum, _EPS)
    return cmnd, e0[:, 0] / width


def pitch_metrics(f0_x: np.ndarray, f0_y: np.ndarray) -> dict[str, float]:
    """``f0_rmse_hz`` over frames voiced in both (NaN if none), ``vuv_error`` (fraction of
    frames whose voicing differs) and ``voiced_recall`` (fraction of the reference's voiced
    frames voiced in ``x``; NaN if the reference has none)."""
    n = min(len(f0_x), len(f0_y))
    fx, fy = f0_x[:n], f0_y[:n]
    vx, vy = fx > 0, fy > 0
    both = vx & vy
    rmse = float(np.sqrt(np.mean((fx[both] - fy[both]) ** 2))) if both.any() else math.nan
    return {
        "f0_rmse_hz": rmse,
        "vuv_error": float(np.mean(vx != vy)) if n else math.nan,
        "voiced_recall": float(both.sum() / vy.sum()) if vy.any() else math.nan,
    }
