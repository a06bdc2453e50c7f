"""The seeds' flow family on vectors: MADE, MAF, IAF, NICE/Real NVP coupling, planar flows.

Every flow follows the contract of the student's :class:`~pwavenet.models.student.IAFFlow`:
``forward(z, cond=None) -> (x, logabsdet)`` maps base noise towards data (the generative
direction), ``inverse(x, cond=None) -> (z, logabsdet)`` maps back, with ``z, x: (B, D)`` and
``logabsdet: (B,)`` the log absolute Jacobian determinant of the map that was applied (so the two
are negatives of each other at matching points). These toy flows are unconditional: ``cond`` is
part of the contract and must be ``None``.

Which direction costs one pass is the MAF/IAF trade-off:

- :class:`MAF` computes ``(loc, log_scale)`` of ``x_i`` from ``x_<i``: the density (``inverse``)
  is one pass, sampling (``forward``) takes ``D`` sequential passes.
- :class:`IAF` computes them from ``z_<i``: sampling is one pass, the density takes ``D``.
- Coupling layers (:class:`AdditiveCoupling` for NICE, :class:`AffineCoupling` for Real NVP)
  are one pass both ways; :class:`Planar` is one pass forward and a scalar root-find inverse.

:class:`FlowModel` pairs a flow with a :class:`StandardBase` (Gaussian or logistic, from
:mod:`pwavenet.models.distributions`) and gives ``log_prob`` and ``sample``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..models.distributions import Gaussian, Logistic

__all__ = [
    "IAF",
    "MADE",
    "MAF",
    "AdditiveCoupling",
    "AffineCoupling",
    "Composite",
    "Flow",
    "FlowModel",
    "MaskedLinear",
    "Permutation",
    "Planar",
    "Rescaling",
    "StandardBase",
    "additive_couplings",
    "affine_couplings",
    "autoregressive_flow",
    "planar_flow",
]

LOG_SCALE_BOUND = 5.0  # |log scale| per layer stays below this (soft clamp, e^5 ~ 148x)


def _soft_clamp(log_scale: Tensor, bound: float) -> Tensor:
    """``bound * tanh(log_scale / bound)``: the identity near 0, never beyond +-bound."""
    return bound * torch.tanh(log_scale / bound)


class Flow(nn.Module):
    """An invertible map with the shared contract; subclasses implement ``_forward`` and
    ``_inverse`` on ``(B, D)`` tensors and return ``(output, logabsdet (B,))``."""

    def forward(self, z: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(x, logabsdet)`` for base-side ``z: (B, D)``."""
        _unconditional(cond)
        return self._forward(z)

    def inverse(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(z, logabsdet)`` with ``forward(z)[0] == x``; logabsdet ``(B,)`` is the inverse's."""
        _unconditional(cond)
        return self._inverse(x)

    def _forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


def _unconditional(cond: Tensor | None) -> None:
    if cond is not None:
        raise ValueError("the toy flows are unconditional: cond must be None")


class Composite(Flow):
    """``flows[-1] o ... o flows[0]``: log-determinants add; the inverse runs in reverse order."""

    def __init__(self, flows: Iterable[Flow]) -> None:
        super().__init__()
        self.flows = nn.ModuleList(flows)

    def _forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        total = z.new_zeros(z.shape[0])
        for flow in self.flows:
            z, logdet = flow(z)
            total = total + logdet
        return z, total

    def _inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(x.shape[0])
        for flow in reversed(self.flows):
            x, logdet = flow.inverse(x)
            total = total + logdet
        return x, total


# ----------------------------------------------------------------------------- MADE


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
    soft-clamped to ``+-log_scale_bound``."""

    def __init__(
        self,
        *,
        features: int,
        hidden: Sequence[int] = (64, 64),
        order: str = "natural",
        seed: int = 0,
        log_scale_bound: float = LOG_SCALE_BOUND,
    ) -> None:
        super().__init__()
        self.made = MADE(features=features, hidden=hidden, order=order, seed=seed)
        self.log_scale_bound = log_scale_bound

    def params(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """``(loc, log_scale)``: ``(B, D)`` each, from ``v: (B, D)``."""
        loc, log_scale = self.made(v)
        return loc, _soft_clamp(log_scale, self.log_scale_bound)

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


class Permutation(Flow):
    """``x = z[:, perm]`` (volume preserving: logabsdet 0). ``perm: (D,)``."""

    def __init__(self, perm: Tensor) -> None:
        super().__init__()
        self.register_buffer("perm", perm.long())
        self.register_buffer("inv", torch.argsort(perm.long()))

    @classmethod
    def reverse(cls, features: int) -> Permutation:
        return cls(torch.arange(features - 1, -1, -1))

    @classmethod
    def random(cls, features: int, seed: int = 0) -> Permutation:
        return cls(torch.randperm(features, generator=torch.Generator().manual_seed(seed)))

    def _forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z[:, self.perm], z.new_zeros(z.shape[0])

    def _inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[:, self.inv], x.new_zeros(x.shape[0])


class Rescaling(Flow):
    """Elementwise ``x = z * exp(log_scale) + shift`` with learned ``(D,)`` parameters (NICE's
    final scaling layer, with a shift); starts as the identity."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.shift = nn.Parameter(torch.zeros(features))

    def _forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        logdet = self.log_scale.sum().expand(z.shape[0])
        return z * self.log_scale.exp() + self.shift, logdet

    def _inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = -self.log_scale.sum().expand(x.shape[0])
        return (x - self.shift) * torch.exp(-self.log_scale), logdet


# ----------------------------------------------------------------------------- coupling


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
        return shift * free, _soft_clamp(log_scale, self.log_scale_bound) * free

    def _forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._params(z)
        return z * log_scale.exp() + shift, log_scale.sum(-1)

    def _inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._params(x)
        return (x - shift) * torch.exp(-log_scale), -log_scale.sum(-1)


# ----------------------------------------------------------------------------- planar


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


# ----------------------------------------------------------------------------- model


class StandardBase(nn.Module):
    """Standard ``"gaussian"`` or ``"logistic"`` noise over ``features`` independent dimensions."""

    def __init__(self, features: int, family: str = "gaussian") -> None:
        super().__init__()
        if family not in ("gaussian", "logistic"):
            raise ValueError(f"family must be gaussian or logistic, got {family!r}")
        self.family = family
        self.register_buffer("zeros", torch.zeros(features))

    def distribution(self) -> Gaussian | Logistic:
        """The per-dimension distribution, batch shape ``(D,)``."""
        return (Gaussian if self.family == "gaussian" else Logistic)(self.zeros, self.zeros)

    def log_prob(self, z: Tensor) -> Tensor:
        """``z: (B, D) -> (B,)``."""
        return self.distribution().log_prob(z).sum(-1)

    def rsample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``(n, D)`` draws."""
        return self.distribution().rsample((n,), generator=generator)


class FlowModel(nn.Module):
    """A density ``log q(x) = log base(z) + logabsdet(inverse)`` with ``z = flow.inverse(x)``."""

    def __init__(self, flow: Flow, base: StandardBase) -> None:
        super().__init__()
        self.flow, self.base = flow, base

    def log_prob(self, x: Tensor) -> Tensor:
        """``x: (B, D) -> (B,)`` nats."""
        z, logdet = self.flow.inverse(x)
        return self.base.log_prob(z) + logdet

    def rsample_with_log_prob(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(x: (n, D), log q(x): (n,))`` from the forward pass alone (how an IAF scores its own
        samples); differentiable with respect to the parameters."""
        z = self.base.rsample(n, generator)
        x, logdet = self.flow(z)
        return x, self.base.log_prob(z) - logdet

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``(n, D)`` samples, no gradient."""
        return self.flow(self.base.rsample(n, generator))[0]


# ----------------------------------------------------------------------------- builders


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


def planar_flow(*, features: int, layers: int, seed: int = 0) -> FlowModel:
    """``layers`` planar flows, then a :class:`Rescaling` (a planar layer moves a point by at most
    ``|u_hat|``, so the scale of the data is left to the last layer)."""
    flows: list[Flow] = [Planar(features, seed=seed + i) for i in range(layers)]
    return FlowModel(Composite([*flows, Rescaling(features)]), StandardBase(features))
