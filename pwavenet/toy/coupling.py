"""Coupling flows: NICE's additive and Real NVP's affine coupling layers.

Both are one pass in either direction: the dimensions where the binary mask is 1 pass unchanged
and condition an MLP that moves the others.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .base import LOG_SCALE_BOUND, Composite, Flow, FlowModel, Rescaling, StandardBase, soft_clamp

__all__ = ["AdditiveCoupling", "AffineCoupling", "additive_couplings", "affine_couplings"]


def _mlp(features: int, hidden: Sequence[int], outputs: int) -> nn.Sequential:
    """ReLU MLP ``(B, features) -> (B, outputs)`` whose last layer starts at zero."""
    layers: list[nn.Module] = []
    width = features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    last = nn.Linear(width, outputs)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class _Coupling(Flow):
    """Dimensions where ``mask == 1`` pass unchanged and condition an MLP that moves the others."""

    def __init__(self, mask: Tensor, hidden: Sequence[int], outputs_per_dim: int) -> None:
        super().__init__()
        self.register_buffer("mask", mask.float())
        features = mask.numel()
        self.net = _mlp(features, hidden, outputs_per_dim * features)


class AdditiveCoupling(_Coupling):
    """NICE: ``x = b * z + (1 - b) * (z + t(b * z))`` with binary ``mask`` b ``(D,)``;
    volume preserving (logabsdet 0)."""

    def __init__(self, mask: Tensor, hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__(mask, hidden, 1)

    def _forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        shift = self.net(z * self.mask) * (1 - self.mask)
        return z + shift, z.new_zeros(z.shape[0])

    def _inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        shift = self.net(x * self.mask) * (1 - self.mask)
        return x - shift, x.new_zeros(x.shape[0])


class AffineCoupling(_Coupling):
    """Real NVP: ``x = b * z + (1 - b) * (z * exp(s(b * z)) + t(b * z))`` with binary ``mask`` b
    ``(D,)``; ``s`` is soft-clamped to ``+-log_scale_bound``."""

    def __init__(
        self,
        mask: Tensor,
        hidden: Sequence[int] = (64, 64),
        log_scale_bound: float = LOG_SCALE_BOUND,
    ) -> None:
        super().__init__(mask, hidden, 2)
        self.log_scale_bound = log_scale_bound

    def _params(self, v: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self.net(v * self.mask).chunk(2, dim=-1)
        free = 1 - self.mask
        return shift * free, soft_clamp(log_scale, self.log_scale_bound) * free

    def _forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._params(z)
        return z * log_scale.exp() + shift, log_scale.sum(-1)

    def _inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._params(x)
        return (x - shift) * torch.exp(-log_scale), -log_scale.sum(-1)


def _alternating_masks(features: int, layers: int) -> list[Tensor]:
    first = torch.arange(features) % 2
    return [first if i % 2 == 0 else 1 - first for i in range(layers)]


def affine_couplings(*, features: int, layers: int, hidden: Sequence[int] = (64, 64)) -> FlowModel:
    """Real NVP: affine coupling layers with alternating masks."""
    flows = [AffineCoupling(m, hidden) for m in _alternating_masks(features, layers)]
    return FlowModel(Composite(flows), StandardBase(features))


def additive_couplings(
    *, features: int, layers: int, hidden: Sequence[int] = (64, 64)
) -> FlowModel:
    """NICE: additive coupling layers with alternating masks, then a :class:`Rescaling`."""
    flows: list[Flow] = [AdditiveCoupling(m, hidden) for m in _alternating_masks(features, layers)]
    return FlowModel(Composite([*flows, Rescaling(features)]), StandardBase(features))
