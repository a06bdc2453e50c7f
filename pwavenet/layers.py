"""Building blocks shared by the teacher and the student.

- :class:`CausalConv1d` is the one causal convolution: it owns its left padding and a single-step
  mode with a per-layer input queue (fast generation, Paine et al. 2016), so each generated sample
  costs O(layers) instead of O(receptive field).
- :class:`ResidualBlock` is WaveNet's gated unit: dilated causal conv, conditioning added through a
  1x1 conv, ``tanh(a) * sigmoid(b)``, then 1x1 residual and (optional) skip outputs.
- :class:`Upsampler` stretches mel frames to the sample rate with transposed convolutions and
  leaky ReLU (non-saturating: a tanh upsampler lets the teacher ignore the mel, SPEC section 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "BlockState",
    "CausalConv1d",
    "ResidualBlock",
    "StepQueue",
    "Upsampler",
    "dilations",
    "receptive_field",
]


def dilations(layers: int, cycles: int) -> list[int]:
    """Dilations doubling within each cycle: ``layers=6, cycles=2 -> [1, 2, 4, 1, 2, 4]``."""
    if layers < 1 or cycles < 1 or layers % cycles:
        raise ValueError(f"layers ({layers}) must be a positive multiple of cycles ({cycles})")
    per_cycle = layers // cycles
    return [2 ** (i % per_cycle) for i in range(layers)]


def receptive_field(layers: int, cycles: int, kernel_size: int) -> int:
    """Samples seen by one output of a stack of dilated causal convs: ``1 + (k-1) * sum(d)``."""
    return 1 + (kernel_size - 1) * sum(dilations(layers, cycles))


class StepQueue:
    """The past inputs one dilated conv needs in single-step mode, as a ring buffer.

    The buffer holds ``2 * N`` slots for a window of ``N = (k - 1) * d + 1`` samples; each new
    sample is written twice (at ``p`` and ``p + N``) so that the last ``N`` samples are always the
    contiguous slice ``[p + 1, p + N + 1)`` and the ``k`` taps are that slice with stride ``d``.
    """

    def __init__(
        self, batch: int, channels: int, kernel_size: int, dilation: int, like: torch.Tensor
    ):
        self.window = (kernel_size - 1) * dilation + 1
        self.dilation = dilation
        self.buffer = like.new_zeros(batch, channels, 2 * self.window)
        self.pos = 0

    def push(self, x: torch.Tensor) -> torch.Tensor:
        """Append ``x: (B, C)`` and return the taps ``(B, C, k)``, oldest first."""
        p = self.pos = (self.pos + 1) % self.window
        self.buffer[:, :, p] = x
        self.buffer[:, :, p + self.window] = x
        return self.buffer[:, :, p + 1 : p + self.window + 1 : self.dilation]


class CausalConv1d(nn.Conv1d):
    """``y_t`` depends on ``x_t, x_{t-d}, ..., x_{t-(k-1)d}`` only.

    ``forward(x: (B, C_in, T)) -> (B, C_out, T)`` pads on the left; ``step`` processes one time
    step with a :class:`StepQueue` and equals the corresponding column of ``forward``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        dilation: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)
        self.left_pad = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left_pad, 0)))

    def new_queue(self, batch: int, like: torch.Tensor) -> StepQueue:
        """An empty (all-zero history) queue, matching the zero padding of ``forward``."""
        return StepQueue(batch, self.in_channels, self.kernel_size[0], self.dilation[0], like)

    def step(self, x: torch.Tensor, queue: StepQueue) -> torch.Tensor:
        """One time step: ``x: (B, C_in) -> (B, C_out)``."""
        taps = queue.push(x).reshape(x.shape[0], -1)
        return F.linear(taps, self.weight.reshape(self.out_channels, -1), self.bias)


class ResidualBlock(nn.Module):
    """Gated residual layer; returns ``(residual_out, skip_out)`` (skip is None without skips;
    without ``residual`` the input passes through unchanged).

    ``forward(x: (B, R, T), cond: (B, G, T) or None)``: ``cond`` is the *already projected*
    conditioning for this layer, so that a model can project the
    upsampled mel for every layer with one matmul and split it (SPEC section 8: slicing one big
    tensor per layer made autograd allocate full-size gradients; ``torch.split`` avoids that).
    """

    def __init__(
        self,
        *,
        residual_channels: int,
        gate_channels: int,
        skip_channels: int | None,
        kernel_size: int,
        dilation: int,
        residual: bool = True,
    ) -> None:
        super().__init__()
        if gate_channels % 2:
            raise ValueError(f"gate_channels must be even, got {gate_channels}")
        self.conv = CausalConv1d(residual_channels, gate_channels, kernel_size, dilation=dilation)
        half = gate_channels // 2
        # The last layer of a skip-connected stack feeds only its skip output.
        self.res = nn.Conv1d(half, residual_channels, 1) if residual else None
        self.skip = nn.Conv1d(half, skip_channels, 1) if skip_channels else None
        self.scale = math.sqrt(0.5)

    def gate(self, a: torch.Tensor) -> torch.Tensor:
        x, y = a.chunk(2, dim=1)
        return torch.tanh(x) * torch.sigmoid(y)

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a = self.conv(x)
        if cond is not None:
            a = a + cond
        h = self.gate(a)
        skip = self.skip(h) if self.skip is not None else None
        if self.res is None:
            return x, skip
        return (x + self.res(h)) * self.scale, skip

    def new_state(self, batch: int, like: torch.Tensor) -> BlockState:
        """Everything :meth:`step` needs: an empty queue and the weights laid out as matrices
        (transposed, residual and skip outputs merged, the residual scale folded in)."""
        r = self.conv.in_channels
        conv_w = self.conv.weight.detach().reshape(self.conv.out_channels, -1).t().contiguous()
        outs = [m for m in (self.res, self.skip) if m is not None]
        out_w = torch.cat([m.weight.detach()[:, :, 0] for m in outs]).t().contiguous()
        out_b = torch.cat([m.bias.detach() for m in outs])
        if self.res is not None:  # fold sqrt(0.5) into the residual rows
            out_w[:, :r] *= self.scale
            out_b[:r] *= self.scale
        return BlockState(
            queue=self.conv.new_queue(batch, like),
            conv_w=conv_w,
            conv_b=self.conv.bias.detach(),
            out_w=out_w,
            out_b=out_b,
            residual=r if self.res is not None else 0,
            half=self.conv.out_channels // 2,
        )

    def step(
        self, x: torch.Tensor, cond: torch.Tensor | None, state: BlockState
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One time step: ``x: (B, R)``, ``cond: (B, G)`` -> ``((B, R), (B, S) or None)``.

        Equals the corresponding column of :meth:`forward`; a handful of small ops per call,
        since generation speed is bounded by per-op overhead at batch 1.
        """
        taps = state.queue.push(x).reshape(x.shape[0], -1)
        a = torch.addmm(state.conv_b, taps, state.conv_w)
        if cond is not None:
            a += cond
        h = torch.tanh(a[:, : state.half]) * torch.sigmoid(a[:, state.half :])
        out = torch.addmm(state.out_b, h, state.out_w)
        r = state.residual
        skip = out[:, r:] if self.skip is not None else None
        if not r:
            return x, skip
        return torch.add(out[:, :r], x, alpha=self.scale), skip


@dataclass
class BlockState:
    """Per-layer state of single-step generation (see :meth:`ResidualBlock.new_state`)."""

    queue: StepQueue
    conv_w: torch.Tensor  # (R * k, G)
    conv_b: torch.Tensor  # (G,)
    out_w: torch.Tensor  # (G / 2, R + S), residual rows pre-scaled
    out_b: torch.Tensor  # (R + S,)
    residual: int  # R, or 0 when the block has no residual output
    half: int  # G / 2


class Upsampler(nn.Module):
    """Mel frames ``(B, M, F)`` to sample rate ``(B, M, F * prod(scales))``.

    Each stage repeats every frame ``s`` times and smooths with a learned conv of width
    ``2s + 1`` initialised to a box filter. There is no squashing non-linearity: a saturating
    upsampler lets the teacher ignore the mel (SPEC section 1). Frame ``j`` ends up centred on
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
