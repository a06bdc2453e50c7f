"""Building blocks shared by the teacher and the student.

- :class:`CausalConv1d` is the one causal convolution: it owns its left padding and a single-step
  mode with a per-layer input queue (fast generation, Paine et al. 2016), so each generated sample
  costs O(layers) instead of O(receptive field).
- :class:`ResidualBlock` is WaveNet's gated unit: dilated causal conv, conditioning added through a
  1x1 conv, ``tanh(a) * sigmoid(b)``, then 1x1 residual and (optional) skip outputs.
- Single-step generation is written once for numpy arrays and tensors (:func:`array_module`): on
  the CPU it runs on numpy, whose calls cost a fraction of torch's, and a generated sample is a
  few hundred small calls; on CUDA it runs on tensors.
- :class:`Upsampler` stretches mel frames to the sample rate with transposed convolutions and
  leaky ReLU (non-saturating: a tanh upsampler lets the teacher ignore the mel, docs/design.md §1).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from types import ModuleType
from typing import TypeVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "BlockState",
    "CausalConv1d",
    "ResidualBlock",
    "StepQueue",
    "TimeMajorWeights",
    "Upsampler",
    "array_module",
    "dilations",
    "extend_last_frame",
    "mel_features",
    "receptive_field",
    "step_array_like",
    "step_conditions",
    "step_threads",
    "to_array",
    "zeros",
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


Array = TypeVar("Array", torch.Tensor, np.ndarray)


def step_array_like(t: torch.Tensor) -> torch.Tensor | np.ndarray:
    """What single-step generation computes with: numpy on the CPU (a numpy call costs a
    fraction of a microsecond, a torch call one to two, and a generated sample is a few hundred
    small calls), torch elsewhere. Returns an empty array of that kind and dtype."""
    if t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64):
        return np.empty(0, dtype=np.float32 if t.dtype == torch.float32 else np.float64)
    return t.new_empty(0)


def step_threads(like: torch.Tensor | np.ndarray) -> AbstractContextManager:
    """A context for a step loop on ``like``'s kind of arrays: numpy's BLAS limited to one thread.
    Its matmuls are too small to split (measured on a 2-core CPU, one thread was faster at batch 1
    and 8; two threads stalled for milliseconds per step whenever the other core was busy). Uses
    threadpoolctl when it is installed (it comes with librosa); otherwise changes nothing."""
    if not isinstance(like, np.ndarray):
        return nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with librosa
        return nullcontext()
    return threadpool_limits(1, user_api="blas")


def array_module(x: torch.Tensor | np.ndarray) -> ModuleType:
    """``numpy`` for numpy arrays, ``torch`` for tensors: the step maths is written once with
    the functions both provide (``matmul``, ``tanh``, ``multiply``, ``add``, ``maximum``,
    ``exp``, all with ``out=``)."""
    return np if isinstance(x, np.ndarray) else torch


def zeros(like: Array, shape: tuple[int, ...]) -> Array:
    """Zeros of the kind, dtype (and device) of ``like``."""
    if isinstance(like, np.ndarray):
        return np.zeros(shape, dtype=like.dtype)
    return like.new_zeros(shape)


def to_array(t: torch.Tensor, like: Array) -> Array:
    """A fresh contiguous copy of ``t`` of the kind of ``like`` (floats take its dtype)."""
    t = t.detach()
    if isinstance(like, np.ndarray):
        a = t.cpu().numpy()
        return np.array(a, dtype=like.dtype if a.dtype.kind == "f" else a.dtype, order="C")
    dtype = like.dtype if t.is_floating_point() else t.dtype
    return t.to(like.device, dtype, copy=True).contiguous()


class StepQueue:
    """The past inputs one dilated conv needs in single-step mode, as a ring buffer.

    The buffer ``(B, 2 * N, C)`` holds two copies of a window of ``N = (k - 1) * d + 1`` samples:
    each new sample is written once, through a strided view, to slots ``p`` and ``p + N``, so
    the last ``N`` samples are always the contiguous slots ``[p + 1, p + N]`` and the ``k`` taps
    are those slots with stride ``d``. The views for every ``p`` are made up front: a step then
    costs one write and one gather. ``like`` is a tensor (torch buffer on its device) or a numpy
    array (numpy buffer, see :func:`array_module`).
    """

    def __init__(
        self,
        batch: int,
        channels: int,
        kernel_size: int,
        dilation: int,
        like: torch.Tensor | np.ndarray,
    ) -> None:
        n = self.window = (kernel_size - 1) * dilation + 1
        self.buffer = zeros(like, (batch, 2 * n, channels))
        self._writes = [self.buffer[:, p::n] for p in range(n)]
        self._taps = [self.buffer[:, p + 1 : p + n + 1 : dilation] for p in range(n)]
        self.pos = 0

    def push(self, x: Array) -> Array:
        """Append ``x: (B, C)`` and return the taps ``(B, k * C)``, oldest tap first."""
        p = self.pos = (self.pos + 1) % self.window
        self._writes[p][...] = x[:, None]
        return self._taps[p].reshape(x.shape[0], -1)


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

    def new_queue(self, batch: int, like: torch.Tensor | np.ndarray) -> StepQueue:
        """An empty (all-zero history) queue, matching the zero padding of ``forward``."""
        return StepQueue(batch, self.in_channels, self.kernel_size[0], self.dilation[0], like)

    def step_weight(self) -> torch.Tensor:
        """The kernel as the matrix ``(k * C_in, C_out)`` that multiplies the taps of
        :meth:`StepQueue.push` (oldest tap first, then channels)."""
        return self.weight.detach().permute(2, 1, 0).reshape(-1, self.out_channels)

    def step(self, x: torch.Tensor, queue: StepQueue) -> torch.Tensor:
        """One time step: ``x: (B, C_in) -> (B, C_out)``."""
        y = queue.push(x) @ self.step_weight()
        return y if self.bias is None else y + self.bias


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
        :func:`step_array_like`): an empty queue, scratch buffers, and the weights as matrices
        with constants folded in, so that a step is nine array calls:

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
        conv_w = self.conv.step_weight() * scale
        conv_w[:, half:] *= 0.5
        res_w = None
        if self.res is not None:
            res_w = torch.cat(
                [self.res.weight.detach()[:, :, 0].t() * 0.5, self.res.bias.detach()[None]]
            )
            res_w = to_array(res_w / scale, like)
        if gate_out is None:
            gate_out = zeros(like, (batch, half + 1))
        gate_out[:, half] = 1
        return BlockState(
            queue=self.conv.new_queue(batch, like),
            conv_w=to_array(conv_w, like),
            res_w=res_w,
            gate=gate_out,
            a=zeros(like, (batch, 2 * half)),
            r=zeros(like, (batch, self.conv.in_channels)),
        )

    def time_major(self, cond: nn.Conv1d, scale: float = 1.0) -> TimeMajorWeights:
        """The weights of :meth:`forward_time_major`, with this block's conditioning
        projection ``cond`` and the constants of :meth:`new_state` folded in (halved ``b``
        columns, residual stream carried divided by ``scale``)."""
        if self.res is None:
            raise ValueError("time-major inference needs blocks with a residual output")
        half, k = self.conv.out_channels // 2, self.conv.kernel_size[0]
        taps = self.conv.step_weight() * scale  # (k * R, G), oldest tap first
        taps[:, half:] *= 0.5
        c_scale, shift = self.cond_affine()
        res = self.res.weight.detach()[:, :, 0].t() * (0.5 / scale)
        return TimeMajorWeights(
            taps=taps.reshape(k, -1, self.conv.out_channels).contiguous(),
            offsets=[(k - 1 - i) * self.conv.dilation[0] for i in range(k)],
            cond=(cond.weight.detach()[:, :, 0].t() * c_scale).contiguous(),
            bias=cond.bias.detach() * c_scale + shift,
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
        block_rows: int = 4096,
    ) -> None:
        """Inference in time-major layout (rows are time steps): ``src, dst: (pad + T, R)``
        hold the residual stream (divided by the ``scale`` of :meth:`time_major`) after
        ``pad`` rows of zeros; ``cond: (T, C)``. Writes the block's output stream to
        ``dst[pad:]``. Equals :meth:`forward` on the same input.

        Each tap of the dilated conv is one matrix product over a shifted view of ``src``
        (no padding copies), and the work goes ``block_rows`` steps at a time so that the
        pre-activations stay in cache: about twice the speed of the convolution layout on
        a CPU, where synthesis is bound by matrix-product throughput.
        """
        steps = src.shape[0] - pad
        half = w.taps.shape[-1] // 2
        a_buf = src.new_empty(min(block_rows, steps), w.taps.shape[-1])
        h_buf = src.new_empty(a_buf.shape[0], half)
        for start in range(0, steps, block_rows):
            end = min(steps, start + block_rows)
            a, h = a_buf[: end - start], h_buf[: end - start]
            torch.addmm(w.bias, cond[start:end], w.cond, out=a)
            for tap, offset in zip(w.taps, w.offsets, strict=True):
                a.addmm_(src[pad + start - offset : pad + end - offset], tap)
            torch.tanh(a, out=a)  # tanh(x) and 2 sigmoid(y) - 1 = tanh(y / 2)
            torch.addcmul(a[:, :half], a[:, :half], a[:, half:], out=h)  # 2 tanh(x) sigmoid(y)
            torch.addmm(src[pad + start : pad + end], h, w.res, out=dst[pad + start : pad + end])
            dst[pad + start : pad + end] += w.res_bias

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


def step_conditions(
    features: torch.Tensor,
    blocks: list[ResidualBlock],
    weight: torch.Tensor,
    bias: torch.Tensor,
    like: Array,
    chunk_steps: int = 128,
) -> Iterator[Array]:
    """Each step's conditioning ``(layers, B, G)`` for single-step generation, from
    ``features: (B, C, T)`` and the blocks' stacked 1x1 projections ``weight (layers * G, C, 1)``,
    ``bias (layers * G,)``, laid out as :meth:`ResidualBlock.step` takes it
    (:meth:`ResidualBlock.cond_affine`). Projected ``chunk_steps`` at a time into a buffer that
    stays in cache (the projection of a long utterance would not fit in memory); transposing one
    ``(G, steps)`` matrix at a time is several times faster than one strided copy."""
    batch, _, steps = features.shape
    layers, gate = len(blocks), blocks[0].conv.out_channels
    per_block = zip(*map(ResidualBlock.cond_affine, blocks), strict=True)
    scale, shift = (torch.stack(a)[:, None] for a in per_block)  # (layers, 1, G)
    chunk = features.new_empty((min(steps, chunk_steps), layers, batch, gate))
    rows = chunk.numpy() if isinstance(like, np.ndarray) else chunk
    for t in range(0, steps, chunk_steps):
        n = min(steps - t, chunk_steps)
        cond = F.conv1d(features[:, :, t : t + n], weight, bias).view(batch, layers, gate, n)
        for b in range(batch):
            for layer in range(layers):
                chunk[:n, layer, b].copy_(cond[b, layer].t())
        torch.addcmul(shift, chunk[:n], scale, out=chunk[:n])
        yield from rows[:n]


@dataclass
class TimeMajorWeights:
    """A residual block's weights for :meth:`ResidualBlock.forward_time_major`."""

    taps: torch.Tensor  # (k, R, G): one matrix per tap, oldest first; b columns halved
    offsets: list[int]  # how many steps back each tap reads
    cond: torch.Tensor  # (C, G): the conditioning projection, b columns halved
    bias: torch.Tensor  # (G,): conv and conditioning biases
    res: torch.Tensor  # (G/2, R): from 2h to the residual update
    res_bias: torch.Tensor  # (R,)


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
