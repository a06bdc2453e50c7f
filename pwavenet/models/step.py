"""Single-step evaluation of a stack of residual blocks: the one step loop behind teacher
generation (:meth:`~pwavenet.models.teacher.WaveNet.generate`) and the IAF inverse
(:meth:`~pwavenet.models.student.IAFFlow.inverse_steps`).

:class:`StepEngine` holds what a step needs, made once: every block's input queue and its
weights as matrices with the constants folded in
(:meth:`~pwavenet.models.block.ResidualBlock.new_state`), the input conv, one buffer of every
block's gate output (so that a model's skip outputs are one matrix product), and the
conditioning of each step, projected for every layer a chunk of steps at a time
(:func:`step_conditions`). The model adds what comes after the stack (the teacher's skip
outputs and output head, the flow's output layer) and what it feeds back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .arrays import Array, array_module, step_threads, to_array, zeros
from .block import ResidualBlock, stream_scales
from .conditioning import FeatureWindows, feature_steps
from .conv import CausalConv1d

__all__ = ["StepEngine", "step_conditions"]


class StepEngine:
    """Steps through ``blocks`` (with their 1x1 conditioning projections ``cond`` and the
    kernel-1 input conv ``input``) one time step at a time, for ``features: (B, C, T)`` on
    arrays of the kind of ``like`` (numpy on the CPU, see
    :func:`~pwavenet.models.arrays.step_array_like`).

    Each :meth:`step` takes the previous output ``x: (B,)`` and returns the stack's residual
    stream ``(B, R)``, carried divided by :attr:`scale`; after it, :attr:`gates`
    ``(B, L * (G/2 + 1))`` holds every block's ``2 h`` followed by a 1. Run the loop inside
    :meth:`threads`.
    """

    def __init__(
        self,
        *,
        input: CausalConv1d,
        blocks: Sequence[ResidualBlock],
        cond: Sequence[nn.Conv1d],
        features: torch.Tensor | FeatureWindows,
        like: Array,
    ) -> None:
        batch = features.shape[0]
        self.like, self.xp, self.blocks = like, array_module(like), list(blocks)
        width = self.blocks[0].conv.out_channels // 2 + 1
        self.gates = zeros(like, (batch, width * len(self.blocks)))
        scales = stream_scales(self.blocks)
        self.states = []
        for i, (block, scale) in enumerate(zip(self.blocks, scales, strict=False)):
            view = self.gates[:, i * width : (i + 1) * width]
            self.states.append(block.new_state(batch, like, scale=scale, gate_out=view))
        self.scale = scales[-1]  # the stream after the last block is divided by this
        self.w_in = to_array(input.weight[:, :, 0].t().contiguous(), like)  # (C_in, R)
        self.b_in = to_array(input.bias, like)
        self.h = zeros(like, (batch, self.w_in.shape[1]))
        weight = torch.cat([c.weight for c in cond])
        bias = torch.cat([c.bias for c in cond])
        self._conditions = step_conditions(features, self.blocks, weight, bias, like)

    def threads(self) -> AbstractContextManager:
        """The context the step loop runs in (see :func:`~pwavenet.models.arrays.step_threads`)."""
        return step_threads(self.like)

    def step(self, x: Array, lag: Array | None = None) -> Array:
        """The next time step, fed the previous output ``x: (B,)`` (and, for an input conv
        with a second channel, the pitch-lag sample ``lag: (B,)``): the residual stream
        ``(B, R)`` after the last block, divided by :attr:`scale` (a view, overwritten by the
        next step). Steps must not outnumber the features' time steps."""
        h = self.xp.multiply(x[:, None], self.w_in[0], out=self.h)  # the input conv, kernel 1
        if lag is not None:
            h += lag[:, None] * self.w_in[1]
        h += self.b_in
        conds = next(self._conditions)
        for block, state, c in zip(self.blocks, self.states, conds, strict=True):
            block.step(h, c, state)
        return h


def step_conditions(
    features: torch.Tensor | FeatureWindows,
    blocks: list[ResidualBlock],
    weight: torch.Tensor,
    bias: torch.Tensor,
    like: Array,
    chunk_steps: int = 128,
) -> Iterator[Array]:
    """Each step's conditioning ``(layers, B, G)`` for single-step generation, from
    ``features: (B, C, T)`` and the blocks' stacked 1x1 projections ``weight (layers * G, C, 1)``,
    ``bias (layers * G,)``, laid out as :meth:`~pwavenet.models.block.ResidualBlock.step`
    takes it (:meth:`~pwavenet.models.block.ResidualBlock.cond_affine`). Projected
    ``chunk_steps`` at a time into a buffer that stays in cache (the projection of a long
    utterance would not fit in memory); transposing one ``(G, steps)`` matrix at a time is
    several times faster than one strided copy."""
    batch, _, steps = features.shape
    layers, gate = len(blocks), blocks[0].conv.out_channels
    per_block = zip(*map(ResidualBlock.cond_affine, blocks), strict=True)
    scale, shift = (torch.stack(a)[:, None] for a in per_block)  # (layers, 1, G)
    chunk = torch.empty((min(steps, chunk_steps), layers, batch, gate), dtype=weight.dtype)
    chunk = chunk.to(weight.device)
    rows = chunk.numpy() if isinstance(like, np.ndarray) else chunk
    for t in range(0, steps, chunk_steps):
        n = min(steps - t, chunk_steps)
        cond = F.conv1d(feature_steps(features, t, t + n), weight, bias)
        cond = cond.view(batch, layers, gate, n)
        for b in range(batch):
            for layer in range(layers):
                chunk[:n, layer, b].copy_(cond[b, layer].t())
        torch.addcmul(shift, chunk[:n], scale, out=chunk[:n])
        yield from rows[:n]
