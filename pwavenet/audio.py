"""Audio input/output and the one log-mel implementation used everywhere.

Reading accepts anything libsndfile reads (WAV of any sample format, FLAC, OGG, ...), mixes to
mono and resamples to the configured rate with soxr. Writing produces 16-bit PCM WAV atomically.

:class:`LogMelSpectrogram` is the only mel extractor in pwavenet: training, synthesis and
evaluation all call it, on CPU or GPU, so features never drift between stages. Frame ``j``
summarises the hop block ``[j * hop, (j + 1) * hop)``: the signal is reflect-padded by
``(n_fft - hop) / 2`` on both sides and framed without centring, which gives exactly
``T // hop`` frames, each centred on its hop block. This is what keeps audio segments and mel
frames aligned (see :mod:`pwavenet.data.cache`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from .config import AudioConfig
from .errors import AudioError
from .fileio import atomic_path

logger = logging.getLogger(__name__)

__all__ = [
    "LogMelSpectrogram",
    "deemphasize",
    "mel_filterbank",
    "pad_mels",
    "preemphasize",
    "read_audio",
    "resample",
    "silence_log_mel",
    "write_wav",
]


def read_audio(path: str | Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 mono in [-1, 1], resampled to ``sample_rate`` if given.

    Returns ``(audio (T,), rate)``. Raises :class:`AudioError` naming the file and the cause for a
    missing, empty, unreadable or non-finite file, or a dangling symbolic link. Conversions
    (channels, rate, clipping float data) are logged, not errors.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise AudioError(
            f"{path}: dangling symbolic link (to {os.readlink(path)}, which does not exist)"
        )
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        cause = str(exc).split(":")[-1].strip() or type(exc).__name__
        raise AudioError(f"{path}: not a readable audio file ({cause})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no audio samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: contains non-finite samples (NaN or Inf)")
    if data.shape[1] > 1:
        logger.info("%s: mixing %d channels to mono", path, data.shape[1])
    audio = data.mean(axis=1, dtype=np.float32)
    peak = float(np.abs(audio).max())
    if peak > 1.0:  # float files may exceed full scale; scale down instead of clipping
        logger.info("%s: peak %.3f exceeds full scale, scaling to 0.999", path, peak)
        audio = audio * np.float32(0.999 / peak)
    if sample_rate is not None and rate != sample_rate:
        logger.info("%s: resampling %d Hz -> %d Hz", path, rate, sample_rate)
        audio = resample(audio, rate, sample_rate)
        rate = sample_rate
    return np.ascontiguousarray(audio, dtype=np.float32), int(rate)


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """High-quality resampling of a mono float signal ``(T,)`` with soxr."""
    if orig_rate == target_rate:
        return audio
    import soxr  # local: only needed when rates differ

    out = soxr.resample(audio, orig_rate, target_rate, quality="HQ")
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def write_wav(path: str | Path, audio: np.ndarray | torch.Tensor, sample_rate: int) -> Path:
    """Write mono audio ``(T,)`` in [-1, 1] as 16-bit PCM WAV, atomically. Values are clipped."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().float().cpu().numpy()
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if not np.isfinite(audio).all():
        raise AudioError(f"{path}: refusing to write non-finite audio")
    path = Path(path)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return path


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None
) -> torch.Tensor:
    """Slaney-normalised mel filterbank ``(n_mels, n_fft // 2 + 1)``, the matrix of librosa's
    ``filters.mel`` (Slaney mel scale, area normalisation; a test holds them equal).

    Built here in float64 from the definition, so that neither librosa (its import and first
    calls cost seconds) nor torchaudio (CUDA-only wheels) is needed to make features: triangles
    between ``n_mels + 2`` points equally spaced in mel from ``fmin`` to ``fmax`` (default the
    Nyquist frequency), each scaled to unit area, ``2 / (f_{i+2} - f_i)``.
    """
    top = float(fmax) if fmax is not None else sample_rate / 2
    edges = _mel_to_hz(np.linspace(_hz_to_mel(float(fmin)), _hz_to_mel(top), n_mels + 2))
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    gaps = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    rising = -ramps[:-2] / gaps[:-1, None]
    falling = ramps[2:] / gaps[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


_MEL_BREAK_HZ = 1000.0  # the Slaney scale is linear below, logarithmic above
_MEL_PER_HZ = 3.0 / 200.0  # linear part: 200/3 Hz per mel
_MEL_LOG_STEP = np.log(6.4) / 27.0  # log part: 27 mels per factor 6.4


def _hz_to_mel(f: float | np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    linear = f * _MEL_PER_HZ
    log = (
        _MEL_BREAK_HZ * _MEL_PER_HZ
        + np.log(np.maximum(f, _MEL_BREAK_HZ) / _MEL_BREAK_HZ) / _MEL_LOG_STEP
    )
    return np.where(f >= _MEL_BREAK_HZ, log, linear)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    brk = _MEL_BREAK_HZ * _MEL_PER_HZ
    return np.where(m >= brk, _MEL_BREAK_HZ * np.exp(_MEL_LOG_STEP * (m - brk)), m / _MEL_PER_HZ)


class LogMelSpectrogram(nn.Module):
    """Natural-log mel magnitude spectrogram, batched, on any device.

    ``forward(audio: (..., T)) -> (..., n_mels, T // hop_length)``.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 22050,
        n_fft: int = 1024,
        hop_length: int = 256,
        win_length: int = 1024,
        n_mels: int = 80,
        fmin: float = 0.0,
        fmax: float | None = 8000.0,
        log_floor: float = 1e-5,
    ) -> None:
        super().__init__()
        if (n_fft - hop_length) % 2:
            raise ValueError("n_fft - hop_length must be even")
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.n_mels, self.log_floor = n_mels, log_floor
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        self.register_buffer(
            "mel_basis", mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax), persistent=False
        )

    @classmethod
    def from_config(cls, cfg: AudioConfig) -> LogMelSpectrogram:
        return cls(
            sample_rate=cfg.sample_rate,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            win_length=cfg.win_length,
            n_mels=cfg.n_mels,
            fmin=cfg.fmin,
            fmax=cfg.fmax,
            log_floor=cfg.log_floor,
        )

    @property
    def pad(self) -> int:
        """Samples of reflect padding on each side."""
        return (self.n_fft - self.hop_length) // 2

    def magnitude(self, audio: torch.Tensor) -> torch.Tensor:
        """Linear STFT magnitude ``(..., n_fft // 2 + 1, T // hop)`` on the padded signal."""
        if audio.shape[-1] < self.hop_length:
            raise ValueError(
                f"audio of {audio.shape[-1]} samples is shorter than one hop ({self.hop_length})"
            )
        lead = audio.shape[:-1]
        x = audio.reshape(-1, audio.shape[-1]).float()
        # Reflect padding needs more samples than the pad; very short inputs fall back to zeros.
        mode = "reflect" if x.shape[-1] > self.pad else "constant"
        x = nn.functional.pad(x.unsqueeze(1), (self.pad, self.pad), mode=mode).squeeze(1)
        spec = torch.stft(
            x,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=False,
            return_complex=True,
        )
        return spec.abs().reshape(*lead, spec.shape[-2], spec.shape[-1])

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        mel = torch.matmul(self.mel_basis, self.magnitude(audio))
        return torch.log(torch.clamp(mel, min=self.log_floor))

    def silence_value(self) -> float:
        """The log-mel value of digital silence (every bin at the floor)."""
        return silence_log_mel(self.log_floor)


def silence_log_mel(log_floor: float) -> float:
    """The log-mel value of digital silence: every bin at the magnitude floor ``log_floor``."""
    return float(np.log(log_floor))


def pad_mels(mels: list[torch.Tensor], silence: float) -> torch.Tensor:
    """Stack mels ``(n_mels, F_i)`` into ``(B, n_mels, max F_i)``, padded with ``silence``
    (:func:`silence_log_mel`) past each one's frames."""
    frames = max(m.shape[-1] for m in mels)
    out = mels[0].new_full((len(mels), mels[0].shape[0], frames), silence)
    for i, m in enumerate(mels):
        out[i, :, : m.shape[-1]] = m
    return out


def preemphasize(audio: torch.Tensor, coef: float) -> torch.Tensor:
    """``x[t] - coef * x[t - 1]`` along the last axis (``x[-1] = 0``), clamped to [-1, 1], the
    range of 16-bit audio the models' output covers. ``coef = 0`` returns ``audio`` itself."""
    if coef == 0:
        return audio
    out = audio.clone()
    out[..., 1:] -= coef * audio[..., :-1]
    return out.clamp_(-1.0, 1.0)


def deemphasize(audio: torch.Tensor, coef: float) -> torch.Tensor:
    """The inverse of :func:`preemphasize` (before its clamp): ``y[t] = x[t] + coef * y[t - 1]``
    along the last axis, computed in float64 by ``scipy.signal.lfilter``."""
    if coef == 0:
        return audio
    from scipy.signal import lfilter

    y = lfilter([1.0], [1.0, -coef], audio.detach().cpu().double().numpy(), axis=-1)
    return torch.from_numpy(y).to(audio.device, audio.dtype)
