"""The teacher's output heads: what the last layer's channels mean, one class per distribution.

An :class:`OutputHead` owns everything that depends on the output distribution: its channel
count, the initial bias of the last layer, the distribution of a set of parameters, the log
probability of 16-bit samples, the noise generation draws up front and the per-step sampling.
:class:`~pwavenet.models.teacher.WaveNet` looks its head up in :data:`HEADS` by the name it is
configured with; a new head is one class and one registry line.

- :class:`MoLHead`: a discretized mixture of logistics (Parallel WaveNet, docs/design.md §2).
- :class:`GaussianHead`: a single Gaussian with its log-sigma clamped at -9 (ClariNet).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .arrays import Array, array_module, to_array
from .distributions import (
    HALF_BIN,
    DiscretizedMixtureLogistics,
    Gaussian,
    mixture_noise,
    sample_mixture_rows,
)

__all__ = ["HEADS", "GaussianHead", "HeadDistribution", "MoLHead", "OutputHead", "Sampler"]

Sampler = Callable[[Array, Array], Array]  # (params (B, C), noise (B, V)) -> samples (B,)
HeadDistribution = DiscretizedMixtureLogistics | Gaussian  # what the heads' parameters describe


class OutputHead:
    """The meaning of the teacher's ``channels`` output channels. Subclasses set
    :attr:`channels` and :attr:`variates` (standard variates drawn per step and utterance)."""

    channels: int
    variates: int

    @classmethod
    def from_settings(cls, *, mixtures: int, log_scale_min: float) -> OutputHead:
        """The head for the teacher's settings (a head ignores those it has no use for)."""
        return cls()

    def init_bias(self, bias: torch.Tensor, log_scale_init: float) -> None:
        """Set the log-scale entries of the last layer's ``bias: (channels,)`` in place."""
        raise NotImplementedError

    def distribution(self, params: torch.Tensor) -> HeadDistribution:
        """The distribution of parameters ``(B, channels, T)``, batch shape ``(B, T)``."""
        raise NotImplementedError

    def log_prob(self, params: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Log probability (nats) of the 16-bit samples ``audio: (B, T)`` under float32
        ``params: (B, channels, T)``: ``(B, T)``."""
        return self.distribution(params).log_prob(audio)

    def noise(
        self,
        batch: int,
        steps: int,
        generator: torch.Generator | list[torch.Generator] | None,
        device: torch.device,
    ) -> torch.Tensor:
        """The randomness of every step, drawn up front as standard variates
        ``(steps, B, variates)``. With a list of generators each utterance draws its own rows,
        so a batch draws exactly what its utterances would draw one by one."""
        if isinstance(generator, list):
            u = torch.stack([torch.rand(steps, self.variates, generator=g) for g in generator], 1)
        else:
            u = torch.rand(steps, batch, self.variates, generator=generator)
        eps = torch.finfo(torch.float32).eps
        return self.standard_variates(u.clamp(eps, 1 - eps).to(device))

    def standard_variates(self, u: torch.Tensor) -> torch.Tensor:
        """Uniforms ``(..., variates)`` in (0, 1) to the variates :meth:`sampler` takes."""
        raise NotImplementedError

    def sampler(self, batch: int, like: Array) -> Sampler:
        """The per-step sampling function for ``batch`` rows of arrays of the kind of ``like``
        (numpy or torch, as the step loop uses): ``(params (B, channels), noise (B, variates))
        -> samples (B,)`` in [-1, 1]."""
        raise NotImplementedError


class MoLHead(OutputHead):
    """A discretized mixture of ``mixtures`` logistics: ``3 * mixtures`` channels (logits,
    means, log-scales), log-scales floored at ``log_scale_min``."""

    def __init__(self, *, mixtures: int, log_scale_min: float) -> None:
        self.mixtures, self.log_scale_min = mixtures, log_scale_min
        self.channels, self.variates = 3 * mixtures, mixtures + 1

    @classmethod
    def from_settings(cls, *, mixtures: int, log_scale_min: float) -> OutputHead:
        return cls(mixtures=mixtures, log_scale_min=log_scale_min)

    def init_bias(self, bias: torch.Tensor, log_scale_init: float) -> None:
        bias[2 * self.mixtures :].fill_(log_scale_init)

    def distribution(self, params: torch.Tensor) -> DiscretizedMixtureLogistics:
        return DiscretizedMixtureLogistics.from_channels(params, log_scale_min=self.log_scale_min)

    def standard_variates(self, u: torch.Tensor) -> torch.Tensor:
        return mixture_noise(u)

    def sampler(self, batch: int, like: Array) -> Sampler:
        rows = to_array(torch.arange(batch) * self.channels + self.mixtures, like)
        floor = self.log_scale_min
        return lambda params, noise: sample_mixture_rows(params, noise, rows, floor)


class GaussianHead(OutputHead):
    """A single Gaussian, ClariNet's teacher: 2 channels (mean, log-sigma); the log-sigma is
    clamped at :attr:`log_scale_min` and the log probability of a 16-bit sample is the log
    density times the bin width (comparable with the mixture's bits per sample)."""

    log_scale_min = -9.0  # ClariNet clamps the Gaussian log-sigma (docs/design.md §5)
    channels, variates = 2, 1

    def init_bias(self, bias: torch.Tensor, log_scale_init: float) -> None:
        bias[1].fill_(log_scale_init)

    def distribution(self, params: torch.Tensor) -> Gaussian:
        loc, log_scale = params.float().unbind(1)
        return Gaussian(loc, log_scale.clamp(min=self.log_scale_min))

    def log_prob(self, params: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return super().log_prob(params, audio) + math.log(2 * HALF_BIN)

    def standard_variates(self, u: torch.Tensor) -> torch.Tensor:
        return torch.erfinv(2 * u - 1) * math.sqrt(2.0)

    def sampler(self, batch: int, like: Array) -> Sampler:
        def sample(params: Array, noise: Array) -> Array:
            log_scale = params[:, 1].clip(min=self.log_scale_min)
            return (params[:, 0] + xp.exp(log_scale) * noise[:, 0]).clip(-1.0, 1.0)

        xp = array_module(like)
        return sample


HEADS: dict[str, type[OutputHead]] = {"mol": MoLHead, "gaussian": GaussianHead}
