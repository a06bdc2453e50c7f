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

__all__ = ["Upsampler", "extend_last_frame", "mel_features"]


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


def mel_features(
    upsampler: Upsampler,
    speaker_table: nn.Embedding | None,
    mel: torch.Tensor,
    speaker: torch.Tensor | None = None,
) -> torch.Tensor:
    """The conditioning of every sample: the upsampled mel, and the speaker embedding when the
    model has one: ``mel (B, M, F) -> (B, M [+ spk], F * hop)``. Checks the mel's shape."""
    if mel.dim() != 3 or mel.shape[1] != upsampler.channels:
        raise ValueError(f"mel must be (B, {upsampler.channels}, frames), got {tuple(mel.shape)}")
    c = upsampler(mel)
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
