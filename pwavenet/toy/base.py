"""The flow contract, composition, fixed layers and the base distribution of the toy flows.

Every flow follows the contract of the student's :class:`~pwavenet.models.student.IAFFlow`:
``forward(z, cond=None) -> (x, logabsdet)`` maps base noise towards data (the generative
direction), ``inverse(x, cond=None) -> (z, logabsdet)`` maps back, with ``z, x: (B, D)`` and
``logabsdet: (B,)`` the log absolute Jacobian determinant of the map that was applied (so the two
are negatives of each other at matching points). These toy flows are unconditional: ``cond`` is
part of the contract and must be ``None``.

:class:`FlowModel` pairs a flow with a :class:`StandardBase` (Gaussian or logistic, from
:mod:`pwavenet.models.distributions`) and gives ``log_prob`` and ``sample``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ..models.distributions import Gaussian, Logistic

__all__ = [
    "LOG_SCALE_BOUND",
    "Composite",
    "Flow",
    "FlowModel",
    "Permutation",
    "Rescaling",
    "StandardBase",
    "soft_clamp",
]

LOG_SCALE_BOUND = 5.0  # |log scale| per layer stays below this (soft clamp, e^5 ~ 148x)


def soft_clamp(log_scale: Tensor, bound: float) -> Tensor:
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
