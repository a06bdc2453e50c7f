"""Output distributions of the teacher and the student, computed stably in float32.

- 16-bit quantisation helpers: ``NUM_BINS`` bins of width ``2 / 65535`` over [-1, 1], whose
  centres include both endpoints.
- :class:`Logistic` and :class:`Gaussian`: location/log-scale distributions with reparameterised
  sampling (the student's per-step output, docs/design.md §3) and closed-form entropies.
- :func:`gaussian_kl`: the ClariNet closed-form KL (docs/design.md §5).
- :class:`DiscretizedMixtureLogistics`: the WaveNet teacher's output (docs/design.md §2).

All log-probabilities are computed in log space (log-sigmoid / softplus forms, ``logsumexp``
over components), so nothing underflows to ``-inf`` and no gradient becomes NaN, even at the
log-scale floor, at the edge bins, or for components far outside [-1, 1].
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .arrays import Array, array_module

logger = logging.getLogger(__name__)

__all__ = [
    "BITS",
    "HALF_BIN",
    "LOG_SCALE_MIN",
    "NUM_BINS",
    "DiscretizedMixtureLogistics",
    "Gaussian",
    "Logistic",
    "bin_centers",
    "bin_index",
    "gaussian_kl",
    "log_diff_sigmoid",
    "mixture_noise",
    "quantize",
    "sample_mixture_rows",
]

BITS = 16
NUM_BINS = 2**BITS  # 65,536 bins for 16-bit audio
HALF_BIN = 1.0 / (NUM_BINS - 1)  # bins of width 2 / 65535 over [-1, 1]
LOG_SCALE_MIN = -16.0  # mixture log-scale floor (docs/design.md §2: <= about -12.5 for 16 bits)

_LN2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
# In float32, interior bins narrower than this many component scales take the midpoint rule
# (density at the centre x bin width, with its curvature correction; relative error about
# 1e-6) as their mass: the exact difference of two CDFs would lose its digits there.
_MIDPOINT_MAX_WIDTH = 0.25


# ----------------------------------------------------------------------------- quantisation


def _at_least_float32(*tensors: Tensor) -> list[Tensor]:
    """Upcast half-precision tensors (autocast outputs) to float32: the loss math stays float32."""
    return [t.float() if t.is_floating_point() and t.element_size() < 4 else t for t in tensors]


def bin_index(x: Tensor, num_bins: int = NUM_BINS) -> Tensor:
    """Index of the bin nearest to each sample. x: (...) floats -> (...) int64 in [0, num_bins).

    Values outside [-1, 1] are clamped first.
    """
    (x,) = _at_least_float32(x)
    half_steps = (num_bins - 1) / 2.0
    return torch.round((x.clamp(-1.0, 1.0) + 1.0) * half_steps).long()


def _index_to_value(index: Tensor, num_bins: int, offset: int, dtype: torch.dtype) -> Tensor:
    """``(2 * index + offset - (num_bins - 1)) / (num_bins - 1)``, rounded once.

    The numerator is an exact integer, so bin centres (``offset`` 0) and edges (``offset``
    +-1) are correctly rounded, and the upper edge of bin i is bit-identical to the lower edge
    of bin i + 1.
    """
    n1 = num_bins - 1
    return (2 * index + (offset - n1)).to(dtype) / n1


def bin_centers(
    num_bins: int = NUM_BINS,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """All bin centres, (num_bins,), from exactly -1 to exactly +1."""
    index = torch.arange(num_bins, device=device)
    return _index_to_value(index, num_bins, 0, dtype)


def quantize(x: Tensor, num_bins: int = NUM_BINS) -> Tensor:
    """Snap x: (...) to the nearest bin centre (after clamping to [-1, 1]); same dtype. No grad."""
    return _index_to_value(bin_index(x, num_bins), num_bins, 0, x.dtype)


@functools.lru_cache(maxsize=16)
def _edge_table(num_bins: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Bin edges j = 0..num_bins at ``(2 j - 1 - (num_bins - 1)) / (num_bins - 1)``, each as an
    unevaluated sum hi + lo of two ``dtype`` numbers: (num_bins + 1,) twice.

    In float32 an edge near +-1 is off by up to 3e-8, 0.1 % of a 16-bit bin; carrying the
    remainder ``lo`` keeps ``(edge - mu) / s`` accurate for components sharper than a bin.
    """
    n1 = num_bins - 1
    with torch.inference_mode(False):  # cached: must stay usable outside inference mode
        exact = (2.0 * torch.arange(num_bins + 1, dtype=torch.float64) - (1 + n1)) / n1
        hi = exact.to(dtype)
        lo = (exact - hi.to(torch.float64)).to(dtype)
        return hi.to(device), lo.to(device)


# ----------------------------------------------------------------------------- stable helpers


def _log1mexp(d: Tensor) -> Tensor:
    """log(1 - exp(-d)) for d > 0 (Maechler 2012): expm1 form below ln 2, log1p form above.

    Both branches see only their own inputs, so the unused one cannot poison gradients.
    """
    small = d < _LN2
    d_small = torch.where(small, d, torch.full_like(d, _LN2))
    d_large = torch.where(small, torch.full_like(d, _LN2), d)
    return torch.where(small, torch.log(-torch.expm1(-d_small)), torch.log1p(-torch.exp(-d_large)))


def log_diff_sigmoid(a: Tensor, b: Tensor) -> Tensor:
    """log(sigmoid(a) - sigmoid(b)) for a > b (broadcast), stable for all magnitudes.

    Uses the identity ``sigmoid(a) - sigmoid(b) = sigmoid(a) * sigmoid(-b) * (1 - exp(b - a))``:
    each factor is computed in log space, so neither saturation for large positive arguments
    (where the naive form is 1 - 1) nor underflow for large negative ones (0 - 0) occurs. The
    factorisation is symmetric, so it covers the complementary form
    ``log(sigmoid(-b) - sigmoid(-a))`` too. Returns -inf where a == b; undefined for a < b.
    """
    return F.logsigmoid(a) + F.logsigmoid(-b) + _log1mexp(a - b)


def _logistic_log_pdf(z: Tensor, log_scale: Tensor) -> Tensor:
    """Log density of Logistic(loc, e^log_scale) at standardised z = (x - loc) / scale."""
    return -z - 2.0 * F.softplus(-z) - log_scale


def _uniform_open(shape: torch.Size, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform noise of ``like``'s dtype/device, clamped to [eps, 1 - eps] so logs stay finite."""
    u = torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)
    eps = torch.finfo(like.dtype).eps
    return u.clamp(eps, 1.0 - eps)


# ----------------------------------------------------------------------------- loc/scale families


class _LocScale:
    """Shared base: a location/log-scale family with broadcast batch shape."""

    def __init__(self, loc: Tensor, log_scale: Tensor) -> None:
        self.loc, self.log_scale = torch.broadcast_tensors(*_at_least_float32(loc, log_scale))

    @property
    def scale(self) -> Tensor:
        """exp(log_scale): (...)."""
        return self.log_scale.exp()

    @property
    def batch_shape(self) -> torch.Size:
        return self.loc.shape

    @property
    def mean(self) -> Tensor:
        """(...)."""
        return self.loc

    def _standardize(self, x: Tensor) -> Tensor:
        return (x - self.loc) * torch.exp(-self.log_scale)

    def _noise(self, shape: torch.Size, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def log_prob(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def log_density(self, x: Tensor) -> Tensor:
        """The log density at x (the same as :meth:`log_prob` for these continuous families;
        the name the teacher's mixture shares, so the distillation scores either)."""
        return self.log_prob(x)

    def rsample(
        self, sample_shape: Sequence[int] = (), generator: torch.Generator | None = None
    ) -> Tensor:
        """Reparameterised sample ``loc + scale * noise``: (*sample_shape, *batch_shape).

        Differentiable with respect to ``loc`` and ``log_scale``.
        """
        shape = torch.Size(sample_shape) + self.batch_shape
        return self.loc + self.scale * self._noise(shape, generator)

    def sample(
        self, sample_shape: Sequence[int] = (), generator: torch.Generator | None = None
    ) -> Tensor:
        """Like :meth:`rsample` but without gradient."""
        with torch.no_grad():
            return self.rsample(sample_shape, generator)


class Logistic(_LocScale):
    """Logistic(loc, scale) with ``scale = exp(log_scale)``; loc, log_scale broadcastable (...).

    Half-precision parameters are upcast to float32.
    """

    def _noise(self, shape: torch.Size, generator: torch.Generator | None) -> Tensor:
        # z = log u - log(1 - u) with u clamped away from 0 and 1: |z| <= about 16 in float32.
        u = _uniform_open(shape, self.loc, generator)
        return torch.log(u) - torch.log1p(-u)

    @property
    def variance(self) -> Tensor:
        """scale^2 * pi^2 / 3: (...)."""
        return torch.exp(2.0 * self.log_scale) * (math.pi**2 / 3.0)

    def log_prob(self, x: Tensor) -> Tensor:
        """Log density at x (broadcast with the batch shape)."""
        return _logistic_log_pdf(self._standardize(x), self.log_scale)

    def cdf(self, x: Tensor) -> Tensor:
        """P(X <= x)."""
        return torch.sigmoid(self._standardize(x))

    def log_cdf(self, x: Tensor) -> Tensor:
        """log P(X <= x), accurate far into the left tail."""
        return F.logsigmoid(self._standardize(x))

    def entropy(self) -> Tensor:
        """Differential entropy in nats, log_scale + 2: (...)."""
        return self.log_scale + 2.0


class Gaussian(_LocScale):
    """Normal(loc, scale) with ``scale = exp(log_scale)``; loc, log_scale broadcastable (...)."""

    def _noise(self, shape: torch.Size, generator: torch.Generator | None) -> Tensor:
        return torch.randn(shape, generator=generator, device=self.loc.device, dtype=self.loc.dtype)

    @property
    def variance(self) -> Tensor:
        """scale^2: (...)."""
        return torch.exp(2.0 * self.log_scale)

    def log_prob(self, x: Tensor) -> Tensor:
        """Log density at x (broadcast with the batch shape)."""
        z = self._standardize(x)
        return -0.5 * z * z - self.log_scale - _HALF_LOG_2PI

    def cdf(self, x: Tensor) -> Tensor:
        """P(X <= x)."""
        return torch.special.ndtr(self._standardize(x))

    def log_cdf(self, x: Tensor) -> Tensor:
        """log P(X <= x), accurate far into the left tail."""
        return torch.special.log_ndtr(self._standardize(x))

    def entropy(self) -> Tensor:
        """Differential entropy in nats, 0.5 * log(2 pi e) + log_scale: (...)."""
        return self.log_scale + (_HALF_LOG_2PI + 0.5)


def gaussian_kl(q_loc: Tensor, q_log_scale: Tensor, p_loc: Tensor, p_log_scale: Tensor) -> Tensor:
    """Elementwise KL(q || p) between Gaussians, all arguments broadcastable (...).

    ``log(sp / sq) + (sq^2 - sp^2 + (mp - mq)^2) / (2 sp^2)`` (ClariNet), evaluated as
    ``(lp - lq) + 0.5 * (exp(2 (lq - lp)) - 1 + ((mp - mq) / sp)^2)`` so that large or tiny
    scales neither overflow nor cancel.
    """
    log_ratio = p_log_scale - q_log_scale
    z = (p_loc - q_loc) * torch.exp(-p_log_scale)
    return log_ratio + 0.5 * (torch.expm1(-2.0 * log_ratio) + z * z)


# ----------------------------------------------------------------------------- teacher output


def mixture_noise(u: Tensor) -> Tensor:
    """Uniforms ``u: (..., K + 1)`` in (0, 1) to K Gumbel variates and a standard logistic."""
    k = u.shape[-1] - 1
    v = u[..., k:]
    return torch.cat([-torch.log(-torch.log(u[..., :k])), torch.log(v) - torch.log1p(-v)], -1)


def sample_mixture_rows(params: Array, noise: Array, rows: Array, log_scale_min: float) -> Array:
    """The one MoL sampling formula (numpy or torch): a sample per row in [-1, 1], ``(N,)``, of
    ``params: (N, 3K)`` [logits | means | log-scales] with ``noise: (N, K + 1)`` from
    :func:`mixture_noise`; ``rows = arange(N) * 3K + K``, each row's means in ``params``."""
    k = noise.shape[1] - 1
    i = rows + (params[:, :k] + noise[:, :k]).argmax(1)  # Gumbel-max component choice
    flat = params.reshape(-1)
    log_scale = flat[i + k].clip(min=log_scale_min)
    return (flat[i] + array_module(params).exp(log_scale) * noise[:, k]).clip(-1.0, 1.0)


@functools.cache
def _check_floor(log_scale_min: float, num_bins: int) -> None:
    """Warn (once per setting) when the log-scale floor caps the achievable likelihood."""
    # Below log(bin width) - 2 one component can put > 95 % of its mass in a single bin.
    limit = math.log(2.0 / (num_bins - 1)) - 2.0
    if log_scale_min > limit:
        logger.warning(
            "log_scale_min %.2f is above %.2f for %d bins: the model cannot become sharper "
            "than about one bin and its likelihood is capped (docs/design.md §2).",
            log_scale_min,
            limit,
            num_bins,
        )


class DiscretizedMixtureLogistics:
    """Discretized mixture of K logistics over ``num_bins`` bins on [-1, 1].

    Parameters have the component axis last: logit_probs, loc, log_scale: (..., K); samples
    x: (...). Bin i has centre ``c_i = -1 + 2 i / (num_bins - 1)`` and half-width
    ``h = 1 / (num_bins - 1)``; the first and last bins also take the tails beyond -1 and +1.

    ``log_scale`` is clamped at ``log_scale_min`` with :func:`torch.clamp`: entries below the
    floor are replaced by it and receive zero gradient. Half-precision parameters are upcast
    to float32 (as in :class:`Logistic` and :class:`Gaussian`).
    """

    def __init__(
        self,
        logit_probs: Tensor,
        loc: Tensor,
        log_scale: Tensor,
        num_bins: int = NUM_BINS,
        log_scale_min: float = LOG_SCALE_MIN,
    ) -> None:
        _check_floor(float(log_scale_min), int(num_bins))
        logit_probs, loc, log_scale = torch.broadcast_tensors(
            *_at_least_float32(logit_probs, loc, log_scale)
        )
        self.logit_probs = logit_probs
        self.loc = loc
        self.log_scale = log_scale.clamp(min=log_scale_min)
        self.num_bins = num_bins
        self.log_scale_min = log_scale_min

    @classmethod
    def from_channels(
        cls, params: Tensor, num_bins: int = NUM_BINS, log_scale_min: float = LOG_SCALE_MIN
    ) -> DiscretizedMixtureLogistics:
        """Build from a network output params: (B, 3K, T) laid out as
        [K logits | K means | K log-scales] along dim 1; the batch shape is (B, T)."""
        if params.dim() != 3 or params.shape[1] % 3 != 0:
            raise ValueError(f"expected params of shape (B, 3K, T), got {tuple(params.shape)}")
        logits, loc, log_scale = (p.transpose(1, 2) for p in params.chunk(3, dim=1))
        return cls(logits, loc, log_scale, num_bins=num_bins, log_scale_min=log_scale_min)

    @property
    def batch_shape(self) -> torch.Size:
        return self.loc.shape[:-1]

    @property
    def num_components(self) -> int:
        return self.loc.shape[-1]

    def _log_weights(self) -> Tensor:
        return torch.log_softmax(self.logit_probs, dim=-1)

    def log_prob(self, x: Tensor) -> Tensor:
        """Log probability mass of the bin containing x: (...) -> (...), never above 0.

        Per component, with a = (upper edge - mu) / s and b = (lower edge - mu) / s:
        first bin log sigmoid(a); last bin log sigmoid(-b); interior bins
        :func:`log_diff_sigmoid` (a, b), or, in float32 where the bin is narrower than 0.25
        component scales, the log density at the bin centre + log(2h) plus a curvature
        correction of order (2h/s)^2 / 24 (the float32 CDF difference would lose its digits
        to cancellation there; this value is accurate to about 1e-6 relative; float64 keeps
        about 11 digits, so it takes the difference: accurate to 1e-9). Combined with
        logsumexp. In float32, bin edges are carried as hi + lo pairs, so bins of components
        sharper than a bin are also accurate to about 1e-5 relative.

        The value is that of the bin nearest to x (edges come from the bin index, so adjacent
        bins share bit-identical edges and the masses sum to one). The gradient with respect
        to x is straight-through: that of the mass of a window of width 2h that moves with x.
        """
        n1 = self.num_bins - 1
        dtype = self.loc.dtype
        index = bin_index(x, self.num_bins)
        shift = (x - x.detach()).to(dtype)  # zero; carries d/dx (straight-through)
        hi, lo = _edge_table(self.num_bins, self.loc.device, dtype)
        inv_scale = torch.exp(-self.log_scale)

        def standardized_edge(j: Tensor) -> Tensor:  # ((edge_j - mu) / s): (..., K)
            return ((hi[j] + shift).unsqueeze(-1) - self.loc + lo[j].unsqueeze(-1)) * inv_scale

        a = standardized_edge(index + 1)  # upper edge
        b = standardized_edge(index)  # lower edge
        width = inv_scale * (2.0 / n1)  # bin width in units of the component scale
        narrow = _MIDPOINT_MAX_WIDTH if dtype != torch.float64 else 0.0
        exact = (width >= narrow) & (a > b)
        a_safe = torch.where(exact, a, torch.ones_like(a))
        b_safe = torch.where(exact, b, torch.zeros_like(b))
        log_exact = log_diff_sigmoid(a_safe, b_safe)
        # Midpoint rule with its curvature term: mass = w f(t) (1 + w^2/24 f''(t)/f(t) + O(w^4)),
        # w = width, t = (centre - mu) / s, and f''/f = 1 - 6 f for the standard logistic f.
        t = 0.5 * (a + b)
        log_f = _logistic_log_pdf(t, torch.zeros_like(t))
        w = width.clamp(max=_MIDPOINT_MAX_WIDTH)  # keeps the unused branch finite
        log_mid = log_f + torch.log(width) + torch.log1p(w * w / 24.0 * (1.0 - 6.0 * log_f.exp()))
        log_interior = torch.where(exact, log_exact, log_mid)

        index = index.unsqueeze(-1)
        log_mass = torch.where(
            index == 0,
            F.logsigmoid(a),
            torch.where(index == n1, F.logsigmoid(-b), log_interior),
        )
        return torch.logsumexp(self._log_weights() + log_mass, dim=-1)

    def log_density(self, x: Tensor) -> Tensor:
        """Continuous mixture log density on the real line (no discretisation): (...) -> (...)."""
        z = (x.unsqueeze(-1) - self.loc) * torch.exp(-self.log_scale)
        return torch.logsumexp(self._log_weights() + _logistic_log_pdf(z, self.log_scale), dim=-1)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """One sample per batch element: (...), continuous values clamped to [-1, 1]. No grad.

        The component is drawn by Gumbel-max, then a logistic sample from that component, by
        :func:`sample_mixture_rows` (the formula generation uses, one step at a time).
        """
        with torch.no_grad():
            k = self.num_components
            gumbel = _uniform_open(self.logit_probs.shape, self.logit_probs, generator)
            logistic = _uniform_open(self.batch_shape, self.loc, generator)
            noise = mixture_noise(torch.cat([gumbel, logistic[..., None]], -1)).reshape(-1, k + 1)
            params = torch.cat([self.logit_probs, self.loc, self.log_scale], -1).reshape(-1, 3 * k)
            rows = torch.arange(params.shape[0], device=params.device) * (3 * k) + k
            x = sample_mixture_rows(params, noise, rows, self.log_scale_min)
            return x.reshape(self.batch_shape)

    def mean(self) -> Tensor:
        """Mean of the continuous (unclamped) mixture, sum_k pi_k mu_k: (...)."""
        return (torch.softmax(self.logit_probs, dim=-1) * self.loc).sum(dim=-1)
