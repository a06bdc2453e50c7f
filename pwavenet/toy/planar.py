"""Planar flows (Rezende & Mohamed 2015): one pass forward, a scalar root-find inverse."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import Composite, Flow, FlowModel, Rescaling, StandardBase

__all__ = ["Planar", "planar_flow"]


class Planar(Flow):
    """Planar flow (Rezende & Mohamed 2015): ``x = z + u_hat * tanh(w . z + b)``, ``(D,)``
    parameters ``u, w`` and a scalar ``b``.

    Invertibility needs ``w . u_hat >= -1``; it is enforced by reparameterising the raw ``u``:
    ``u_hat = u + (m(w . u) - w . u) w / |w|^2`` with ``m(a) = -1 + softplus(a) > -1``, so any
    raw parameters give an invertible map. The log-determinant ``log(1 + tanh'(w . z + b) m)``
    is evaluated as ``log(t^2 + (1 - t^2) softplus(w . u))`` with ``t = tanh(w . z + b)``, which
    stays finite where ``m`` rounds to -1. (At ``w = 0`` the map is a shift by ``u tanh(b)``.)

    The inverse is numerical: ``x - z`` is parallel to ``u_hat``, so only the scalar
    ``a = w . z`` is unknown, and it solves ``a + m tanh(a + b) = w . x``, whose left side is
    non-decreasing in ``a`` (that is what the constraint buys). Bisection on the bracket
    ``w . x +- |m|`` (``|tanh| <= 1``) with 8 more halvings than the dtype has mantissa bits finds
    ``a``; its gradient is attached by the implicit function theorem,
    ``da = -dg / (dg/da)`` for ``g(a) = a + m tanh(a + b) - w . x``, so the inverse is
    differentiable too.
    """

    def __init__(self, features: int, seed: int = 0, init_std: float = 0.1) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.u = nn.Parameter(torch.randn(features, generator=g) * init_std)
        self.w = nn.Parameter(torch.randn(features, generator=g) * init_std)
        self.b = nn.Parameter(torch.zeros(()))

    def constrained(self) -> tuple[Tensor, Tensor]:
        """``(u_hat: (D,), 1 + w . u_hat)``. The second is computed as ``softplus(w . u) > 0``
        without cancellation; it is 1 (a pure shift) when ``w`` is zero, where the
        reparameterisation leaves ``u`` alone."""
        wu, ww = self.w @ self.u, self.w @ self.w
        norm2 = ww.clamp_min(torch.finfo(ww.dtype).tiny)
        softplus = F.softplus(wu)
        r = ww / norm2  # 1, or 0 when |w|^2 underflows
        return self.u + (softplus - 1.0 - wu) * self.w / norm2, (1.0 - r) + r * softplus

    def _slope(self, t: Tensor, one_plus_wu_hat: Tensor) -> Tensor:
        """``1 + tanh'(a + b) w . u_hat`` from ``t = tanh(a + b): (B,)``: the Jacobian determinant
        and the derivative of the map along ``w``; positive."""
        t2 = t * t
        return (t2 + (1.0 - t2) * one_plus_wu_hat).clamp_min(torch.finfo(t.dtype).tiny)

    def _forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        u_hat, one_plus = self.constrained()
        t = torch.tanh(z @ self.w + self.b)
        return z + t[:, None] * u_hat, self._slope(t, one_plus).log()

    def _inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u_hat, one_plus = self.constrained()
        m, target = one_plus - 1.0, x @ self.w
        with torch.no_grad():
            lo, hi = target - m.abs(), target + m.abs()
            for _ in range(round(-math.log2(torch.finfo(x.dtype).eps)) + 8):
                mid = 0.5 * (lo + hi)
                above = mid + m * torch.tanh(mid + self.b) > target
                lo, hi = torch.where(above, lo, mid), torch.where(above, mid, hi)
            a0 = 0.5 * (lo + hi)
        t0 = torch.tanh(a0 + self.b)
        residual = a0 + m * t0 - target  # ~0; carries dg/d(x, parameters)
        a = a0 - (residual - residual.detach()) / self._slope(t0, one_plus)
        t = torch.tanh(a + self.b)
        return x - t[:, None] * u_hat, -self._slope(t, one_plus).log()


def planar_flow(*, features: int, layers: int, seed: int = 0) -> FlowModel:
    """``layers`` planar flows, then a :class:`Rescaling` (a planar layer moves a point by at most
    ``|u_hat|``, so the scale of the data is left to the last layer)."""
    flows: list[Flow] = [Planar(features, seed=seed + i) for i in range(layers)]
    return FlowModel(Composite([*flows, Rescaling(features)]), StandardBase(features))
