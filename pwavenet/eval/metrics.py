"""Objective comparisons of synthesized audio with its reference.

Every metric takes the output ``x`` and the reference ``y`` (1-D float arrays or tensors at the
same sample rate, compared over their common length):

- :func:`mrstft_distance`: the multi-resolution STFT loss
  (:func:`pwavenet.train.losses.mrstft_loss`);
- :func:`mel_cepstral_distortion`: MCD in dB over cepstra of the log-mel spectrogram (c0 left out);
- :func:`log_spectral_distance`: LSD in dB over STFT power spectra;
- :func:`loudness_ratio_db`: ``20 log10(rms(x) / rms(y))`` (a whispering system is far below 0);
- :func:`compare`: all of them and the pitch metrics of :mod:`pwavenet.eval.pitch`, as one dict.

:func:`measure` runs a list of per-utterance measures (:data:`MEASURES`, by default
:func:`compare` alone) and merges their dicts: a further measure is one more function
``(output, reference, audio) -> dict[str, float]`` in that list, with its keys' labels in
:data:`METRIC_COLUMNS` and which way is better in :data:`METRIC_DIRECTIONS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..audio import LogMelSpectrogram
from ..config import AudioConfig
from ..train.losses import mrstft_loss
from . import standard
from .pitch import f0_track, pitch_metrics

__all__ = [
    "MEASURES",
    "METRIC_COLUMNS",
    "METRIC_DIRECTIONS",
    "Measure",
    "compare",
    "log_spectral_distance",
    "loudness_ratio_db",
    "measure",
    "mel_cepstral_distortion",
    "mrstft_distance",
]

_EPS = 1e-10  # power floor before a log (silent frames, -100 dB) and RMS floor before a ratio
_MCD_GATE_DB = 40.0  # MCD counts the reference's frames within this many dB of its loudest


def _pair(x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Both signals as float32 tensors ``(T,)`` cut to their common length."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(-1)
    y = torch.as_tensor(np.asarray(y, dtype=np.float32)).reshape(-1)
    n = min(x.shape[0], y.shape[0])
    return x[:n], y[:n]


def mrstft_distance(x: Any, y: Any) -> float:
    """Multi-resolution STFT distance (spectral convergence + log-magnitude L1); 0 if equal."""
    x, y = _pair(x, y)
    return float(mrstft_loss(x[None], y[None]))


def loudness_ratio_db(x: Any, y: Any) -> float:
    """``20 log10(rms(x) / rms(y))`` in dB."""
    x, y = _pair(x, y)
    rms_x = float(x.pow(2).mean().sqrt())
    rms_y = float(y.pow(2).mean().sqrt())
    return 20.0 * math.log10(max(rms_x, _EPS) / max(rms_y, _EPS))


def mel_cepstral_distortion(
    x: Any, y: Any, audio: AudioConfig, coefficients: int = 13, gate_db: float = _MCD_GATE_DB
) -> float:
    """Mean over the reference's speech frames of ``(10 / ln 10) sqrt(2 sum_d (c_d(x) -
    c_d(y))^2)`` in dB, with ``c_1 .. c_D`` the orthonormal DCT-II of the natural-log mel
    magnitudes (c0, the level, is left out). Speech frames are those whose mel energy is within
    ``gate_db`` of the reference's loudest frame: in pauses the reference sits at the log floor
    and any noise would swamp the mean (the usual practice of scoring MCD on speech only)."""
    x, y = _pair(x, y)
    mel = LogMelSpectrogram.from_config(audio)
    with torch.no_grad():
        mx, my = mel(x), mel(y)  # (n_mels, frames)
    dct = _dct_matrix(audio.n_mels)[1 : coefficients + 1]
    diff = dct @ (mx - my)
    per_frame = (10.0 / math.log(10.0)) * torch.sqrt(2.0 * diff.pow(2).sum(0))
    level = 10.0 * torch.log10((2.0 * my).exp().mean(0).clamp(min=_EPS))  # dB of mel power
    speech = level >= level.max() - gate_db
    return float(per_frame[speech].mean())


def _dct_matrix(n: int) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None]
    m = torch.cos(math.pi / n * (i + 0.5) * k) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m.float()


def log_spectral_distance(x: Any, y: Any, n_fft: int = 1024, hop: int = 256) -> float:
    """Mean over frames of the RMS over frequency of ``10 log10 |X|^2 - 10 log10 |Y|^2`` (dB);
    powers are floored at 1e-10."""
    x, y = _pair(x, y)
    window = torch.hann_window(n_fft)
    px, py = (
        torch.stft(s, n_fft, hop, window=window, return_complex=True).abs().pow(2) for s in (x, y)
    )
    diff = 10.0 * (px.clamp(min=_EPS).log10() - py.clamp(min=_EPS).log10())
    return float(diff.pow(2).mean(0).sqrt().mean())


def compare(x: Any, y: Any, audio: AudioConfig) -> dict[str, float]:
    """Every metric of ``x`` against the reference ``y``, as one flat dict."""
    x, y = _pair(x, y)
    f0_x = f0_track(x.numpy(), audio.sample_rate, audio.hop_length)
    f0_y = f0_track(y.numpy(), audio.sample_rate, audio.hop_length)
    return {
        "voiced_fraction": float(np.mean(f0_x > 0)) if len(f0_x) else math.nan,
        "mrstft": mrstft_distance(x, y),
        "mcd_db": mel_cepstral_distortion(x, y, audio),
        "lsd_db": log_spectral_distance(x, y, audio.n_fft, audio.hop_length),
        "loudness_db": loudness_ratio_db(x, y),
        **pitch_metrics(f0_x, f0_y),
    }


# A per-utterance measure: (output (T,), reference (T,), feature settings) -> {key: value}; NaN
# where it does not apply to the utterance (e.g. F0 RMSE without voiced frames).
Measure = Callable[[np.ndarray, np.ndarray, AudioConfig], dict[str, float]]
MEASURES: tuple[Measure, ...] = (compare,)

# The tables' labels of the metrics, in their order (a key missing here is shown by its name).
METRIC_COLUMNS = {
    "voiced_fraction": "voiced frames",
    "mrstft": "MR-STFT",
    "mcd_db": "MCD (dB)",
    "lsd_db": "LSD (dB)",
    "loudness_db": "loudness (dB)",
    "f0_rmse_hz": "F0 RMSE (Hz)",
    "vuv_error": "V/UV error",
    "voiced_recall": "voiced recall",
}
# Which way each metric ranks systems (:data:`pwavenet.eval.stats.DIRECTIONS`): a metric listed
# here gets paired tests between systems. The output's own voiced fraction ranks nothing (it is
# read against the reference's); loudness is best at 0 dB from the reference.
METRIC_DIRECTIONS = {
    "mrstft": "lower",
    "mcd_db": "lower",
    "lsd_db": "lower",
    "loudness_db": "zero",
    "f0_rmse_hz": "lower",
    "vuv_error": "lower",
    "voiced_recall": "higher",
}
METRIC_COLUMNS |= standard.COLUMNS  # the optional standard measures (pwavenet[eval])
METRIC_DIRECTIONS |= standard.DIRECTIONS


def measure(
    output: Any, reference: Any, audio: AudioConfig, measures: Sequence[Measure] = MEASURES
) -> dict[str, float]:
    """Every measure of ``output`` against ``reference`` (1-D, same rate), merged in order."""
    x = np.asarray(output, dtype=np.float32).reshape(-1)
    y = np.asarray(reference, dtype=np.float32).reshape(-1)
    values: dict[str, float] = {}
    for fn in measures:
        values.update(fn(x, y, audio))
    return values
