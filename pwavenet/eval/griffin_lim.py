"""Griffin-Lim: audio from a log-mel spectrogram without any training.

The baseline every report carries beside the neural systems (docs/design.md §8).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ..audio import LogMelSpectrogram
from ..config import AudioConfig

__all__ = ["griffin_lim"]

_PINV_CACHE: dict[bytes, torch.Tensor] = {}


def _mel_pinv(basis: torch.Tensor) -> torch.Tensor:
    """Pseudo-inverse of a mel filterbank, computed once per filterbank (an SVD that takes
    seconds on a busy CPU)."""
    key = basis.numpy().tobytes()
    if key not in _PINV_CACHE:
        _PINV_CACHE[key] = torch.linalg.pinv(basis.double()).float()
    return _PINV_CACHE[key]


def griffin_lim(
    log_mel: torch.Tensor, audio: AudioConfig, iterations: int = 32, seed: int = 0
) -> torch.Tensor:
    """Audio ``(frames * hop,)`` from a log-mel spectrogram ``(n_mels, frames)`` with no
    training: the mel filterbank's pseudo-inverse (clamped at 0) gives a magnitude, and
    ``iterations`` of Griffin-Lim find a phase, with the same framing as the mel extractor."""
    mel = LogMelSpectrogram.from_config(audio)
    magnitude = (_mel_pinv(mel.mel_basis) @ log_mel.float().exp()).clamp(min=0)
    frames, hop, n_fft = log_mel.shape[-1], audio.hop_length, audio.n_fft
    left = (n_fft - audio.win_length) // 2
    window = F.pad(mel.window, (left, n_fft - audio.win_length - left))
    g = torch.Generator().manual_seed(seed)
    phase = torch.exp(2j * math.pi * torch.rand(magnitude.shape, generator=g))
    length = frames * hop

    def synth(spec: torch.Tensor) -> torch.Tensor:
        chunks = torch.fft.irfft(spec, n=n_fft, dim=0) * window[:, None]  # (n_fft, frames)
        size = (1, (frames - 1) * hop + n_fft)
        ola = F.fold(chunks[None], size, kernel_size=(1, n_fft), stride=(1, hop))
        norm = F.fold(
            window.pow(2)[None, :, None].expand(1, -1, frames), size, (1, n_fft), stride=(1, hop)
        )
        full = (ola / norm.clamp(min=1e-8)).reshape(-1)
        return full[mel.pad : mel.pad + length]

    def analyse(signal: torch.Tensor) -> torch.Tensor:
        padded = F.pad(signal[None, None], (mel.pad, mel.pad), mode="reflect")[0, 0]
        return torch.stft(
            padded, n_fft, hop, audio.win_length, mel.window, center=False, return_complex=True
        )

    signal = synth(magnitude * phase)
    for _ in range(iterations):
        spec = analyse(signal)
        signal = synth(magnitude * torch.exp(1j * spec.angle()))
    return signal
