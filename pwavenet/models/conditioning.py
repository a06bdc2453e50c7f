"""The conditioning every sample sees: the log-mel spectrogram stretched to the sample rate by
:class:`Upsampler` (each stage repeats the frames and smooths them with a learned convolution,
with no squashing non-linearity: a tanh upsampler lets the teacher ignore the mel, docs/design.md
§1), plus an optional speaker embedding (:func:`mel_features`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..features import f0_from_rows

__all__ = [
    "FeatureWindows",
    "SineExcitation",
    "Upsampler",
    "extend_last_frame",
    "feature_steps",
    "features_window",
    "frame_f0",
    "lagged",
    "mel_features",
    "pitch_excitation",
    "pitch_lags",
]


class Upsampler(nn.Module):
    """Mel frames ``(B, M, F)`` to sample rate ``(B, M, F * prod(scales))``.

    Each stage repeats every frame ``s`` times and smooths with a learned conv of width
    ``2s + 1`` initialised to a box filter. There is no squashing non-linearity: a saturating
    upsampler lets the teacher ignore the mel (docs/design.md §1). Frame ``j`` ends up centred on
    samples ``[j * hop, (j + 1) * hop)``, the hop block it was computed from.
    """

    def __init__(self, scales: list[int], channels: int) -> None:
        super().__init__()
        self.scales = list(scales)
        self.convs = nn.ModuleList()
        for s in self.scales:
            conv = nn.Conv2d(1, 1, (1, 2 * s + 1), padding=(0, s), bias=False)
            nn.init.constant_(conv.weight, 1.0 / (2 * s + 1))
            self.convs.append(conv)
        self.channels = channels
        self.edge_frames = 2  # > sum_i s_i / prod_{j<=i} s_j, the smoothing reach in frames

    @property
    def hop(self) -> int:
        return math.prod(self.scales)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        # Extend both edges with copies of the edge frames, then crop: a sample's value then
        # depends only on nearby frames, never on where the tensor happens to end (an utterance
        # alone equals the same utterance padded in a batch with copies of its last frame).
        p = self.edge_frames
        x = F.pad(mel, (p, p), mode="replicate").unsqueeze(1)
        for s, conv in zip(self.scales, self.convs, strict=True):
            x = torch.repeat_interleave(x, s, dim=-1)
            x = conv(x)
        return x.squeeze(1)[:, :, p * self.hop : x.shape[-1] - p * self.hop]


def frame_f0(feats: torch.Tensor, row: int) -> torch.Tensor:
    """F0 in Hz per frame ``(B, F)`` (float64), 0 where unvoiced, from the log-F0 row ``row`` and
    the voicing row ``row + 1`` of ``feats (B, C, F)`` (:func:`pwavenet.features.f0_from_rows`)."""
    return f0_from_rows(feats[:, row].double(), feats[:, row + 1].double())


class SineExcitation(nn.Module):
    """A sine at the frame's F0 in voiced frames and silence elsewhere, at the sample rate: the
    excitation of neural source-filter models (NSF), here one more conditioning channel.

    ``forward(features (B, C, F), phase0 (B,) or None) -> (B, 1, F * hop)``: F0 is read from the
    log-F0 row ``row`` and the voicing row ``row + 1`` (:mod:`pwavenet.features`), held over each
    hop block. The phase accumulates over samples from ``phase0`` (radians, default 0) in float64,
    so a window of frames gets the same samples as the whole utterance when ``phase0`` is
    :meth:`phase_at` of the frames before it.
    """

    def __init__(self, row: int, hop: int, sample_rate: int) -> None:
        super().__init__()
        if sample_rate <= 0:
            raise ValueError(f"a sine excitation needs the sample rate, got {sample_rate}")
        self.row, self.hop, self.sample_rate = row, hop, sample_rate

    def phase_at(self, feats: torch.Tensor) -> torch.Tensor:
        """The phase ``(B,)`` after all the frames of ``feats``, modulo 2 pi."""
        cycles = frame_f0(feats, self.row).sum(dim=-1) * self.hop / self.sample_rate
        return 2 * math.pi * torch.remainder(cycles, 1.0)

    def forward(self, feats: torch.Tensor, phase0: torch.Tensor | None = None) -> torch.Tensor:
        f0 = frame_f0(feats, self.row)
        step = torch.repeat_interleave(f0 / self.sample_rate, self.hop, dim=-1)  # cycles/sample
        cycles = torch.remainder(torch.cumsum(step, dim=-1) - step, 1.0)  # sample 0 at phase0
        phase = 2 * math.pi * cycles
        if phase0 is not None:
            phase = phase + phase0.double()[:, None]
        return (torch.sin(phase) * (step > 0)).to(feats.dtype)[:, None]


def pitch_lags(feats: torch.Tensor, row: int, hop: int, sample_rate: int) -> torch.Tensor:
    """One pitch period in samples for every sample ``(B, F * hop)`` (long): ``round(rate /
    F0)`` of its frame, from the log-F0 row ``row`` and voicing row ``row + 1`` of ``feats (B, C,
    F)``; 0 in unvoiced frames (no lag input there)."""
    f0 = frame_f0(feats, row)
    period = torch.where(f0 > 0, torch.round(sample_rate / f0.clamp(min=1.0)), 0.0).long()
    return torch.repeat_interleave(period, hop, dim=-1)


def lagged(audio: torch.Tensor, lags: torch.Tensor) -> torch.Tensor:
    """``audio[b, t - lags[b, t]]`` for ``audio, lags: (B, T)``, 0 where the lag is 0 or reaches
    before the start: the sample one pitch period back (QPNet's pitch-dependent input, as a
    long-term predictor sees it)."""
    t = torch.arange(audio.shape[-1], device=audio.device)
    index = t - lags
    valid = (lags > 0) & (index >= 0)
    return torch.gather(audio, -1, index.clamp(min=0)) * valid


def pitch_excitation(
    n_mels: int, pitch: bool, excitation: str, hop: int, sample_rate: int
) -> SineExcitation | None:
    """The excitation a model's settings ask for: ``"none"`` or ``"sine"`` (needs ``pitch``, the
    log-F0 and voicing rows after the ``n_mels`` mel rows)."""
    if excitation == "none":
        return None
    if excitation != "sine":
        raise ValueError(f"excitation must be 'none' or 'sine', got {excitation!r}")
    if not pitch:
        raise ValueError("a sine excitation needs the pitch rows (pitch=True)")
    return SineExcitation(n_mels, hop, sample_rate)


def mel_features(
    upsampler: Upsampler,
    speaker_table: nn.Embedding | None,
    mel: torch.Tensor,
    speaker: torch.Tensor | None = None,
    excitation: SineExcitation | None = None,
    phase0: torch.Tensor | None = None,
) -> torch.Tensor:
    """The conditioning of every sample: the upsampled mel (with its pitch rows), the sine
    excitation and the speaker embedding when the model has them: ``mel (B, M, F) ->
    (B, M [+ 1] [+ spk], F * hop)``. Checks the mel's shape."""
    if mel.dim() != 3 or mel.shape[1] != upsampler.channels:
        raise ValueError(f"mel must be (B, {upsampler.channels}, frames), got {tuple(mel.shape)}")
    c = upsampler(mel)
    if excitation is not None:
        c = torch.cat([c, excitation(mel, phase0)], dim=1)
    if speaker_table is not None:
        if speaker is None:
            raise ValueError("this model needs speaker ids")
        emb = speaker_table(speaker)[:, :, None].expand(-1, -1, c.shape[-1])
        c = torch.cat([c, emb], dim=1)
    return c


def extend_last_frame(mel: torch.Tensor, lengths: list[int], hop: int) -> torch.Tensor:
    """A copy of ``mel (B, M, F)`` where the frames past each utterance's ``lengths[b]`` samples
    repeat its last frame: padded frames then never change an utterance's samples, however far
    the upsampler looks ahead (it replicates the edge frame at the end of a tensor too)."""
    mel = mel.clone()
    for b, n in enumerate(lengths):
        last = -(-n // hop)
        mel[b, :, last:] = mel[b, :, last - 1 : last]
    return mel


def features_window(model: nn.Module, mel: torch.Tensor, speaker, start: int, end: int):
    """``model.features(mel)[..., start:end]`` computed from the frames near the window only
    (plus the upsampler's reach on both sides, so the values are the same): memory bounded by
    the window, not the utterance. ``model`` is a teacher or a student (``upsampler``,
    ``excitation``, ``features(mel, speaker, phase0)``)."""
    hop, margin = model.upsampler.hop, model.upsampler.edge_frames
    lo = max(0, start // hop - margin)
    hi = min(mel.shape[-1], -(-end // hop) + margin)
    phase0 = model.excitation.phase_at(mel[:, :, :lo]) if model.excitation else None
    cond = model.features(mel[:, :, lo:hi], speaker, phase0)
    return cond[:, :, start - lo * hop : end - lo * hop]


class FeatureWindows:
    """The conditioning ``(B, C, F * hop)`` of ``mel`` for sequential readers, computed
    ``window`` steps at a time (:func:`features_window`) instead of whole: the upsampler's
    intermediate arrays of a 60 s utterance take gigabytes. ``shape``, ``device`` and ``dtype``
    are those of the whole; :meth:`steps` gives any range (:func:`feature_steps`)."""

    def __init__(self, model: nn.Module, mel: torch.Tensor, speaker=None, window: int = 1 << 15):
        self.model, self.mel, self.speaker, self.window = model, mel, speaker, window
        total = mel.shape[-1] * model.upsampler.hop
        self._start, self._cache = 0, features_window(model, mel, speaker, 0, min(window, total))
        self.shape = (*self._cache.shape[:2], total)
        self.device, self.dtype = self._cache.device, self._cache.dtype

    def steps(self, start: int, end: int) -> torch.Tensor:
        """Steps ``[start, end)``: from the cached window, or a new window starting there."""
        cached = self._cache.shape[-1]
        if not (self._start <= start and end <= self._start + cached):
            if end - start > self.window:
                return features_window(self.model, self.mel, self.speaker, start, end)
            self._start = start
            stop = min(self.shape[-1], start + self.window)
            self._cache = features_window(self.model, self.mel, self.speaker, start, stop)
        return self._cache[:, :, start - self._start : end - self._start]


def feature_steps(features: torch.Tensor | FeatureWindows, start: int, end: int) -> torch.Tensor:
    """Steps ``[start, end)`` of conditioning held whole ``(B, C, T)`` or in windows."""
    if isinstance(features, FeatureWindows):
        return features.steps(start, end)
    return features[:, :, start:end]
