"""WaveNet's gated residual layer, in its three forms: the convolution layout of training
(:meth:`ResidualBlock.forward`), single steps with folded constants (:meth:`ResidualBlock.step`,
generation and the IAF inverse) and the time-major layout of fast inference
(:meth:`ResidualBlock.forward_time_major`, the student's synthesis).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType

import numpy as np
import torch
from torch import nn

from .arrays import Array, array_module, to_array, zeros
from .conv import CausalConv1d, StepQueue

__all__ = ["BlockState", "ResidualBlock", "TimeMajorWeights", "stream_scales"]


class ResidualBlock(nn.Module):
    """Gated residual layer; returns ``(residual_out, skip_out)`` (skip is None without skips;
    without ``residual`` the input passes through unchanged).

    ``forward(x: (B, R, T), cond: (B, G, T) or None)``: ``cond`` is the *already projected*
    conditioning for this layer (the model owns the projections, so that generation can stack
    them into one matrix and project a chunk of steps for every layer at once).
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

    def new_state(
        self,
        batch: int,
        like: torch.Tensor | np.ndarray,
        *,
        scale: float = 1.0,
        gate_out: torch.Tensor | np.ndarray | None = None,
    ) -> BlockState:
        """Everything :meth:`step` needs, as arrays of the kind of ``like`` (see
        :func:`~pwavenet.models.arrays.step_array_like`): an empty queue, scratch buffers,
        and the weights as matrices with constants folded in, so that a step is nine array
        calls:

        - ``sigmoid(b) = (1 + tanh(b / 2)) / 2``: the ``b`` columns of the conv (and of the
          conditioning, :meth:`cond_affine`) are halved, the gate is one ``tanh`` of the whole
          vector and ``h' = t_a + t_a * t_b = 2 h``; the 1/2 goes into the output matrices;
        - the output biases are a last row of the output matrices, which multiplies the
          constant 1 that ends the gate buffer ``(B, G/2 + 1)``;
        - the residual stream arrives divided by ``scale`` (the product of the ``sqrt(0.5)`` of
          the blocks before): the conv weights are multiplied by it and the residual output
          divided by it, so that the stream update is one add and the next block gets
          ``scale * sqrt(0.5)``.

        ``gate_out: (B, G/2 + 1)``, a view into one buffer holding every block's gate output
        (ending in 1), lets the model compute all skip outputs with one matmul
        (:meth:`skip_matrix`).
        """
        half = self.conv.out_channels // 2
        conv_w, res_w = self.step_matrices(scale)
        if gate_out is None:
            gate_out = zeros(like, (batch, half + 1))
        gate_out[:, half] = 1
        return BlockState(
            queue=self.conv.new_queue(batch, like),
            conv_w=to_array(conv_w, like),
            res_w=None if res_w is None else to_array(res_w, like),
            gate=gate_out,
            a=zeros(like, (batch, 2 * half)),
            r=zeros(like, (batch, self.conv.in_channels)),
        )

    def step_matrices(self, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weights of one step with the constants of :meth:`new_state` folded in: the conv
        ``(k * R, G)`` (taps oldest first, ``b`` columns halved, times ``scale``) and the
        residual output ``(G/2 + 1, R)`` (from ``[2h, 1]``, divided by ``scale``; None without
        a residual output)."""
        half = self.conv.out_channels // 2
        conv_w = self.conv.step_weight() * scale
        conv_w[:, half:] *= 0.5
        if self.res is None:
            return conv_w, None
        res_w = torch.cat(
            [self.res.weight.detach()[:, :, 0].t() * 0.5, self.res.bias.detach()[None]]
        )
        return conv_w, res_w / scale

    def time_major(self, cond: nn.Conv1d, scale: float = 1.0) -> TimeMajorWeights:
        """The weights of :meth:`forward_time_major`, with this block's conditioning
        projection ``cond`` and its constants folded in: the ``a`` (tanh) columns doubled, so
        that one ``sigmoid`` of the pre-activations gives ``sigmoid(2a) = (1 + tanh(a)) / 2``
        and ``sigmoid(b)``; the residual output reads ``h / 2`` and the stream is carried
        divided by ``scale`` (as in :meth:`new_state`)."""
        if self.res is None:
            raise ValueError("time-major inference needs blocks with a residual output")
        half, k = self.conv.out_channels // 2, self.conv.kernel_size[0]
        cols = torch.ones_like(self.conv.bias)
        cols[:half] = 2.0
        taps = self.conv.step_weight() * scale * cols  # (k * R, G), oldest tap first
        res = self.res.weight.detach()[:, :, 0].t() * (2.0 / scale)
        return TimeMajorWeights(
            taps=taps.reshape(k, -1, self.conv.out_channels).contiguous(),
            offsets=[(k - 1 - i) * self.conv.dilation[0] for i in range(k)],
            cond=(cond.weight.detach()[:, :, 0].t() * cols).contiguous(),
            bias=(cond.bias.detach() + self.conv.bias.detach()) * cols,
            res=res.contiguous(),
            res_bias=self.res.bias.detach() / scale,
        )

    @staticmethod
    def forward_time_major(
        w: TimeMajorWeights,
        src: torch.Tensor,
        dst: torch.Tensor,
        cond: torch.Tensor,
        pad: int,
        batch: int = 1,
        block_rows: int = 4096,
    ) -> None:
        """Inference in time-major layout: row ``t * B + b`` holds step ``t`` of utterance
        ``b``. ``src, dst: ((pad + T) * B, R)`` hold the residual stream (divided by the
        ``scale`` of :meth:`time_major`) after ``pad`` steps of zeros; ``cond: (T * B, C)``.
        Writes the block's output stream to the rows after the padding of ``dst``. Equals
        :meth:`forward` on the same input.

        A step back is ``B`` rows back, so each tap of the dilated conv is one matrix product
        over a shifted view of ``src`` (no padding copies) for the whole batch, and the work
        goes ``block_rows`` rows at a time so that the pre-activations stay in cache: about
        twice the speed of the convolution layout on a CPU, where synthesis is bound by
        matrix-product throughput.
        """
        first = pad * batch
        rows = src.shape[0] - first
        half = w.taps.shape[-1] // 2
        shifts = [first - offset * batch for offset in w.offsets]
        a_buf = src.new_empty(min(block_rows, rows), w.taps.shape[-1])
        h_buf = src.new_empty(a_buf.shape[0], half)
        for start in range(0, rows, block_rows):
            end = min(rows, start + block_rows)
            a, h = a_buf[: end - start], h_buf[: end - start]
            torch.addmm(w.bias, cond[start:end], w.cond, out=a)
            for tap, shift in zip(w.taps, shifts, strict=True):
                a.addmm_(src[shift + start : shift + end], tap)
            # One sigmoid instead of a tanh (torch's CPU tanh measured 5.9x slower than its
            # sigmoid, docs/serving.md): sigmoid(2x) - 1/2 = tanh(x) / 2, then h / 2.
            torch.sigmoid(a, out=a)
            a[:, :half].sub_(0.5)
            torch.mul(a[:, :half], a[:, half:], out=h)  # tanh(x) sigmoid(y) / 2
            out = dst[first + start : first + end]
            torch.addmm(src[first + start : first + end], h, w.res, out=out)
            out += w.res_bias

    def cond_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, shift)``, both ``(G,)``: :meth:`step` takes the conditioning as
        ``cond * scale + shift`` (conv bias added, ``b`` half halved, see :meth:`new_state`)."""
        half = self.conv.out_channels // 2
        scale = torch.ones_like(self.conv.bias)
        scale[half:] = 0.5
        return scale, self.conv.bias.detach() * scale

    def skip_matrix(self) -> torch.Tensor | None:
        """The skip output as the matrix ``(G/2 + 1, S)`` that multiplies a step's gate buffer
        (its ``2 h``, then 1: the last row is the bias); None without skips."""
        if self.skip is None:
            return None
        return torch.cat(
            [self.skip.weight.detach()[:, :, 0].t() * 0.5, self.skip.bias.detach()[None]]
        )

    def step(self, x: Array, cond: Array, state: BlockState) -> Array:
        """One time step: ``x: (B, R)``, the residual stream divided by the ``scale`` of
        :meth:`new_state`, ``cond: (B, G)`` as :meth:`cond_affine` says. Updates ``x`` in place
        (and returns it) and writes ``2 h`` to ``state.gate``; the skip output is
        ``state.gate @ skip_matrix()``. Equals the corresponding column of :meth:`forward`.
        """
        xp = state.xp
        a = xp.matmul(state.queue.push(x), state.conv_w, out=state.a)
        a += cond
        xp.tanh(a, out=a)
        h = xp.multiply(state.a_lo, state.a_hi, out=state.h)
        h += state.a_lo
        if state.res_w is not None:
            x += xp.matmul(state.gate, state.res_w, out=state.r)
        return x


@dataclass
class TimeMajorWeights:
    """A residual block's weights for :meth:`ResidualBlock.forward_time_major`."""

    taps: torch.Tensor  # (k, R, G): one matrix per tap, oldest first; a columns doubled
    offsets: list[int]  # how many steps back each tap reads
    cond: torch.Tensor  # (C, G): the conditioning projection, a columns doubled
    bias: torch.Tensor  # (G,): conv and conditioning biases, a columns doubled
    res: torch.Tensor  # (G/2, R): from h / 2 to the residual update
    res_bias: torch.Tensor  # (R,)

    def to(self, dtype: torch.dtype) -> TimeMajorWeights:
        """These weights in ``dtype`` (the offsets unchanged)."""
        cast = {k: v.to(dtype) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        return replace(self, **cast)


@dataclass
class BlockState:
    """Per-layer state of single-step generation (see :meth:`ResidualBlock.new_state`); numpy
    arrays or tensors."""

    queue: StepQueue
    conv_w: np.ndarray | torch.Tensor  # (k * R, G): taps -> pre-activations, b columns halved
    res_w: np.ndarray | torch.Tensor | None  # (G/2 + 1, R): [2h, 1] -> residual update
    gate: np.ndarray | torch.Tensor  # (B, G/2 + 1): the last 2h, then 1
    a: np.ndarray | torch.Tensor  # (B, G): scratch for the pre-activations
    r: np.ndarray | torch.Tensor  # (B, R): scratch for the residual update
    xp: ModuleType = field(init=False)
    a_lo: np.ndarray | torch.Tensor = field(init=False)  # views, made once
    a_hi: np.ndarray | torch.Tensor = field(init=False)
    h: np.ndarray | torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        half = self.a.shape[1] // 2
        self.xp = array_module(self.a)
        self.a_lo, self.a_hi, self.h = self.a[:, :half], self.a[:, half:], self.gate[:, :half]


def stream_scales(blocks: Sequence[ResidualBlock]) -> list[float]:
    """The ``scale`` the residual stream is carried divided by, before each block and after the
    last (``len(blocks) + 1`` values): the product of the ``sqrt(0.5)`` of the blocks before
    (see :meth:`ResidualBlock.new_state`)."""
    scales = [1.0]
    for block in blocks:
        scales.append(scales[-1] * block.scale)
    return scales
