"""Autoregressive flows on vectors: MADE, and the MAF and IAF layers built on it.

Which direction costs one pass is the MAF/IAF trade-off:

- :class:`MAF` computes ``(loc, log_scale)`` of ``x_i`` from ``x_<i``: the density (``inverse``)
  is one pass, sampling (``forward``) takes ``D`` sequential passes.
- :class:`IAF` computes them from ``z_<i``: sampling is one pass, the density takes ``D``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import LOG_SCALE_BOUND, Composite, Flow, FlowModel, Permutation, StandardBase, soft_clamp

__all__ = ["IAF", "MADE", "MAF", "MaskedLinear", "autoregressive_flow"]


class MaskedLinear(nn.Linear):
    """``y = x @ (weight * mask).T + bias``; ``mask: (out, in)`` of zeros and ones."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Masked autoencoder (Germain et al. 2015): ``x: (B, D) -> (loc, log_scale)``, both ``(B, D)``,
    where output ``i`` depends only on the inputs that come before ``i`` in ``order``.

    ``order`` is ``"natural"`` (x_1 first), ``"reversed"`` or ``"random"`` (a permutation drawn
    from ``seed``). Input ``i`` gets degree ``rank(i) + 1`` in 1..D; a hidden unit of degree ``k``
    sees inputs of degree <= k and output ``i`` sees hidden units of degree < its own, so the
    Jacobian of the outputs is strictly triangular in the ordering. Hidden degrees cycle through
    1..D-1 (drawn at random, as in the seeds, when the order is random). The output layer starts
    at zero: the flows built on a MADE begin as the identity.
    """

    def __init__(
        self,
        *,
        features: int,
        hidden: Sequence[int] = (64, 64),
        order: str = "natural",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if order not in ("natural", "reversed", "random"):
            raise ValueError(f"order must be natural, reversed or random, got {order!r}")
        g = torch.Generator().manual_seed(seed)
        if order == "natural":
            rank = torch.arange(features)
        elif order == "reversed":
            rank = torch.arange(features - 1, -1, -1)
        else:
            rank = torch.randperm(features, generator=g)
        self.register_buffer("degrees", rank + 1)  # (D,): input i is the degrees[i]-th
        top = max(features - 1, 1)
        previous, layers = self.degrees, []
        for width in hidden:
            if order == "random":
                low = min(int(previous.min()), top)
                degrees = torch.randint(low, top + 1, (width,), generator=g)
            else:
                degrees = torch.arange(width) % top + 1
            layers += [MaskedLinear((degrees[:, None] >= previous[None, :]).float()), nn.ReLU()]
            previous = degrees
        out_mask = (self.degrees[:, None] > previous[None, :]).float()
        self.out = MaskedLinear(out_mask.repeat(2, 1))  # rows: D locs, then D log-scales
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.net = nn.Sequential(*layers, self.out)

    @property
    def order(self) -> Tensor:
        """The input indices in autoregressive order: ``(D,)``."""
        return torch.argsort(self.degrees)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(loc, log_scale)``, both ``(B, D)``, of each dimension given its predecessors."""
        loc, log_scale = self.net(x).chunk(2, dim=-1)
        return loc, log_scale


class _MaskedAffine(Flow):
    """``x = z * exp(log_scale) + loc`` with ``(loc, log_scale)`` from a MADE; the log-scale is
    soft-clamped to ``+-log_scale_bound``. ``made`` are the MADE's keyword arguments
    (``features``, ``hidden``, ``order``, ``seed``: see :class:`MADE`)."""

    def __init__(self, *, log_scale_bound: float = LOG_SCALE_BOUND, **made: Any) -> None:
        super().__init__()
        self.made = MADE(**made)
        self.log_scale_bound = log_scale_bound

    def params(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """``(loc, log_scale)``: ``(B, D)`` each, from ``v: (B, D)``."""
        loc, log_scale = self.made(v)
        return loc, soft_clamp(log_scale, self.log_scale_bound)

    def _passes(self) -> int:
        return self.made.degrees.numel()


class MAF(_MaskedAffine):
    """Masked autoregressive flow layer: ``(loc_i, log_scale_i)`` come from ``x_<i`` (data side).

    ``inverse`` (density) is one pass; ``forward`` (sampling) repeats ``x = z * s(x) + loc(x)``
    ``D`` times: after pass ``k`` the first ``k`` dimensions in the order are exact, because each
    depends only on earlier ones.
    """

    def _forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = z
        for _ in range(self._passes()):
            loc, log_scale = self.params(x)
            x = z * log_scale.exp() + loc
        return x, log_scale.sum(-1)

    def _inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        loc, log_scale = self.params(x)
        return (x - loc) * torch.exp(-log_scale), -log_scale.sum(-1)


class IAF(_MaskedAffine):
    """Inverse autoregressive flow layer: ``(loc_i, log_scale_i)`` come from ``z_<i`` (noise side),
    as in the Parallel WaveNet student. ``forward`` (sampling) is one pass; ``inverse`` (density
    of an outside point) repeats ``z = (x - loc(z)) / s(z)`` ``D`` times."""

    def _forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        loc, log_scale = self.params(z)
        return z * log_scale.exp() + loc, log_scale.sum(-1)

    def _inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = x
        for _ in range(self._passes()):
            loc, log_scale = self.params(z)
            z = (x - loc) * torch.exp(-log_scale)
        return z, -log_scale.sum(-1)


def autoregressive_flow(
    kind: str,
    *,
    features: int,
    layers: int,
    hidden: Sequence[int] = (64, 64),
    base: str = "gaussian",
    seed: int = 0,
) -> FlowModel:
    """``layers`` MAF (``kind="maf"``) or IAF (``"iaf"``) layers in the natural order with a
    reversal between consecutive layers, so successive layers see the dimensions in opposite
    orders. (With one order throughout, the first dimension would only ever be transformed
    affinely by constants: a stack could not make its marginal non-Gaussian.)"""
    layer = {"maf": MAF, "iaf": IAF}[kind]
    flows: list[Flow] = []
    for i in range(layers):
        if i:
            flows.append(Permutation.reverse(features))
        flows.append(layer(features=features, hidden=hidden, seed=seed + i))
    return FlowModel(Composite(flows), StandardBase(features, base))
