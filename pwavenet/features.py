"""The conditioning features of a waveform: its log-mel spectrogram, and with ``audio.pitch`` two
more rows per frame, log-F0 and voicing, from the F0 tracker of ``pwavenet evaluate``.

Rows of the features ``(audio.feature_channels, frames)``:

- ``0 .. n_mels - 1``: the log-mel spectrogram (:class:`~pwavenet.audio.LogMelSpectrogram`);
- ``n_mels`` (with pitch): ``ln(F0 / 100 Hz)``, continuous: unvoiced frames take the value
  interpolated linearly between the voiced frames around them (the edges repeat the nearest
  voiced frame; an utterance with no voiced frame is 0), as a text-to-speech front end predicts it;
- ``n_mels + 1`` (with pitch): voicing, 1 for a voiced frame and 0 otherwise.

Training, synthesis from audio files and evaluation all featurise through :class:`Features`,
so the rows are the same everywhere; a ``.npy`` input to ``pwavenet synthesize`` must carry the
same rows. :func:`f0_from_rows` reads F0 in Hz back from them.
"""

from __future__ import annotations

import numpy as np
import torch

from .audio import LogMelSpectrogram
from .config import AudioConfig

__all__ = ["F0_REFERENCE_HZ", "Features", "f0_from_rows", "pitch_rows"]

F0_REFERENCE_HZ = 100.0  # the log-F0 row is ln(F0 / this)


def pitch_rows(f0: np.ndarray) -> np.ndarray:
    """``(2, frames)`` float32: continuous ``ln(F0 / 100 Hz)`` and voicing, from F0 in Hz per
    frame (0 = unvoiced)."""
    f0 = np.asarray(f0, dtype=np.float64).reshape(-1)
    voiced = f0 > 0
    log_f0 = np.zeros_like(f0)
    if voiced.any():
        idx = np.nonzero(voiced)[0]
        log_f0 = np.interp(np.arange(f0.size), idx, np.log(f0[idx] / F0_REFERENCE_HZ))
    return np.stack([log_f0, voiced.astype(np.float64)]).astype(np.float32)


def f0_from_rows(log_f0: torch.Tensor, voicing: torch.Tensor) -> torch.Tensor:
    """F0 in Hz from the pitch rows (any shape), 0 where the voicing row is below 0.5."""
    return torch.where(voicing > 0.5, F0_REFERENCE_HZ * torch.exp(log_f0), 0.0)


class Features:
    """Waveform ``(T,)`` to conditioning features ``(audio.feature_channels, T // hop)``."""

    def __init__(self, audio: AudioConfig, mel: LogMelSpectrogram | None = None) -> None:
        self.audio = audio
        self.mel = mel if mel is not None else LogMelSpectrogram.from_config(audio)

    @torch.no_grad()
    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        mel = self.mel(wav)
        if not self.audio.pitch:
            return mel
        from .eval.pitch import f0_track

        f0 = f0_track(wav.detach().cpu().numpy(), self.audio.sample_rate, self.audio.hop_length)
        rows = torch.from_numpy(pitch_rows(f0[: mel.shape[-1]])).to(mel.device, mel.dtype)
        return torch.cat([mel, rows], dim=0)
