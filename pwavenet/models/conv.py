"""The one causal convolution of the teacher and the student, and the dilations of a stack.

:class:`CausalConv1d` owns its left padding and a single-step mode with a per-layer input queue
(:class:`StepQueue`, fast generation, Paine et al. 2016), so each generated sample costs
O(layers) instead of O(receptive field). :func:`receptive_field` is the one formula for how far
back a stack of them sees.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .arrays import Array, zeros

__all__ = ["CausalConv1d", "StepQueue", "dilations", "receptive_field"]


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

    The buffer ``(B, 2 * N, C)`` holds two copies of a window of ``N = (k - 1) * d + 1`` samples:
    each new sample is written once, through a strided view, to slots ``p`` and ``p + N``, so
    the last ``N`` samples are always the contiguous slots ``[p + 1, p + N]`` and the ``k`` taps
    are those slots with stride ``d``. The views for every ``p`` are made up front: a step then
    costs one write and one gather. ``like`` is a tensor (torch buffer on its device) or a numpy
    array (numpy buffer, see :func:`~pwavenet.models.arrays.array_module`).
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
