"""Three normalised 2-D target densities with exact samples: seed 002's banana, two moons and a
ring of eight Gaussians (the last two written as equal-weight Gaussian mixtures, so their log
densities are analytic)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..models.distributions import Gaussian

__all__ = ["SHAPES", "Banana", "GaussianMixture", "Target", "make_target"]

SHAPES = ("banana", "moons", "ring")


class Banana:
    """Seed 002's density ``N(x2 | 0, 4) N(x1 | x2^2 / 4, 1)`` (variance 4: std 2), normalised."""

    name, title = "banana", "seed 002: N(x2|0,4) N(x1|x2²/4,1)"
    extent = (-4.0, 12.0, -7.0, 7.0)  # x1 from, to; x2 from, to

    def log_density(self, x: Tensor) -> Tensor:
        """``x: (B, 2) -> (B,)``."""
        x1, x2 = x.unbind(-1)
        zero = torch.zeros_like(x1)
        log_p2 = Gaussian(zero, zero + math.log(2.0)).log_prob(x2)
        return log_p2 + Gaussian(x2 * x2 / 4.0, zero).log_prob(x1)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``(n, 2)`` exact draws."""
        g = torch.randn(n, 2, generator=generator)
        x2 = 2.0 * g[:, 1]
        return torch.stack([x2 * x2 / 4.0 + g[:, 0], x2], dim=-1)


class GaussianMixture:
    """Equal-weight mixture of isotropic Gaussians with ``means: (K, 2)`` and one ``std``."""

    def __init__(
        self, name: str, title: str, means: Tensor, std: float, extent: tuple[float, ...]
    ) -> None:
        self.name, self.title, self.means, self.std, self.extent = name, title, means, std, extent

    def log_density(self, x: Tensor) -> Tensor:
        """``x: (B, 2) -> (B,)``, normalised."""
        d2 = (x[:, None, :] - self.means.to(x.dtype)).pow(2).sum(-1)  # (B, K)
        log_k = -0.5 * d2 / self.std**2 - math.log(2.0 * math.pi * self.std**2)
        return torch.logsumexp(log_k, dim=-1) - math.log(self.means.shape[0])

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``(n, 2)`` exact draws."""
        k = torch.randint(self.means.shape[0], (n,), generator=generator)
        return self.means[k] + self.std * torch.randn(n, 2, generator=generator)


def make_target(name: str) -> Target:
    """``"banana"``, ``"moons"`` or ``"ring"``.

    The moons are the usual two half circles (radius 1, the lower one shifted by (1, -0.5)),
    centred and scaled by 2, as 128 Gaussians of std 0.2 evenly spaced along each arc (spacing
    0.05: indistinguishable from noise around a continuous arc). The ring has 8 Gaussians of
    std 0.4 on a circle of radius 3.
    """
    if name == "banana":
        return Banana()
    if name == "moons":
        t = (torch.arange(128) + 0.5) * math.pi / 128
        upper = torch.stack([t.cos(), t.sin()], -1)
        lower = torch.stack([1.0 - t.cos(), 0.5 - t.sin()], -1)
        means = 2.0 * (torch.cat([upper, lower]) - torch.tensor([0.5, 0.25]))
        return GaussianMixture("moons", "two moons", means, 0.2, (-3.5, 3.5, -2.5, 2.5))
    if name == "ring":
        t = torch.arange(8) * (2.0 * math.pi / 8)
        means = 3.0 * torch.stack([t.cos(), t.sin()], -1)
        return GaussianMixture("ring", "ring of 8 Gaussians", means, 0.4, (-4.5, 4.5, -4.5, 4.5))
    raise ValueError(f"unknown target {name!r}; expected one of {', '.join(SHAPES)}")


Target = Banana | GaussianMixture
