"""Tests for pwavenet.models.distributions: 16-bit bins, Logistic/Gaussian, the discretized
mixture."""

from __future__ import annotations

import decimal
import logging
import math
from decimal import Decimal

import pytest
import torch
import torch.nn.functional as F
from torch import distributions as D

from pwavenet.models.distributions import (
    HALF_BIN,
    LOG_SCALE_MIN,
    NUM_BINS,
    DiscretizedMixtureLogistics,
    Gaussian,
    Logistic,
    bin_centers,
    bin_index,
    gaussian_kl,
    log_diff_sigmoid,
    quantize,
)

LOG_BIN_WIDTH = math.log(2 * HALF_BIN)


def reference_log_mass(
    x: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor, num_bins: int = NUM_BINS
) -> torch.Tensor:
    """Exact float64 log mass of one logistic in the bin of each x: (...); params broadcast.

    Bin centres are recomputed in float64 from the bin index. Uses the complementary form
    ``sigmoid(-b) - sigmoid(-a)`` right of the mean, so it is accurate down to float64 underflow.
    """
    x = bin_centers(num_bins, dtype=torch.float64)[bin_index(x, num_bins)]
    loc, log_scale = loc.double(), log_scale.double()
    h = 1.0 / (num_bins - 1)
    s = log_scale.exp()
    a, b = (x + h - loc) / s, (x - h - loc) / s
    interior = torch.where(
        b > 0,
        torch.log(torch.sigmoid(-b) - torch.sigmoid(-a)),
        torch.log(torch.sigmoid(a) - torch.sigmoid(b)),
    )
    first = torch.isclose(x, torch.tensor(-1.0, dtype=x.dtype))
    last = torch.isclose(x, torch.tensor(1.0, dtype=x.dtype))
    return torch.where(first, F.logsigmoid(a), torch.where(last, F.logsigmoid(-b), interior))


# ----------------------------------------------------------------------------- bins


def test_bins_are_consistent():
    centers = bin_centers()
    assert centers.shape == (NUM_BINS,)
    assert centers[0].item() == -1.0 and centers[-1].item() == 1.0
    assert torch.all(centers[1:] > centers[:-1])
    torch.testing.assert_close(centers.diff().double().mean().item(), 2 * HALF_BIN)
    assert torch.equal(bin_index(centers), torch.arange(NUM_BINS))
    assert torch.equal(quantize(centers), centers)

    x = torch.cat([torch.rand(10_000) * 2.2 - 1.1, torch.tensor([-1.0, 1.0, -5.0, 5.0])])
    q = quantize(x)
    assert torch.equal(centers[bin_index(x)], q)
    assert torch.equal(quantize(q), q)
    inside = x.abs() <= 1
    assert ((x - q)[inside].abs() <= HALF_BIN * 1.01).all()  # float32 rounding of x + 1
    assert bin_index(torch.tensor([5.0])).item() == NUM_BINS - 1
    assert bin_index(torch.tensor([-5.0])).item() == 0
    x64 = x.double()
    assert torch.equal(bin_centers(dtype=torch.float64)[bin_index(x64)], quantize(x64))


# ----------------------------------------------------------------------------- log_diff_sigmoid


def test_log_diff_sigmoid_matches_float64_where_naive_float32_fails():
    b = torch.linspace(-300.0, 300.0, 601)
    deltas = torch.tensor([1e-3, 0.1, 1.0, 10.0, 50.0])
    a = (b[:, None] + deltas[None, :]).flatten()
    b = b[:, None].expand(-1, len(deltas)).flatten()
    ours = log_diff_sigmoid(a, b)
    a64, b64 = a.double(), b.double()  # the same float32 inputs, evaluated in float64
    ref = torch.where(
        b64 > 0,
        torch.log(torch.sigmoid(-b64) - torch.sigmoid(-a64)),
        torch.log(torch.sigmoid(a64) - torch.sigmoid(b64)),
    )
    assert torch.isfinite(ref).all()
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-4)

    # Large positive (1 - 1) and large negative (0 - 0) arguments: naive float32 gives -inf.
    a_hard = torch.tensor([20.0, 30.0, -110.0, -200.0])
    b_hard = torch.tensor([19.0, 29.0, -111.0, -201.0])
    naive = torch.log(torch.sigmoid(a_hard) - torch.sigmoid(b_hard))
    assert torch.isneginf(naive).all()
    ours_hard = log_diff_sigmoid(a_hard, b_hard)
    expected = torch.tensor([-20.0, -30.0, -110.0, -200.0], dtype=torch.float64) + math.log(
        1 - math.exp(-1)
    )
    expected[:2] = -b_hard[:2].double() + math.log(1 - math.exp(-1))  # sigmoid(-b) - sigmoid(-a)
    torch.testing.assert_close(ours_hard.double(), expected, rtol=1e-6, atol=1e-5)


def test_log_diff_sigmoid_gradients_are_finite():
    a = torch.tensor([40.0, -120.0, 0.5, 3.0], requires_grad=True)
    b = torch.tensor([39.999, -121.0, 0.4999, -3.0], requires_grad=True)
    log_diff_sigmoid(a, b).sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


# ----------------------------------------------------------------------------- Logistic, Gaussian


def torch_logistic(loc: torch.Tensor, scale: torch.Tensor) -> D.Distribution:
    """The standard construction: Uniform(0, 1) through logit, then affine."""
    base = D.Uniform(torch.zeros_like(loc), torch.ones_like(loc))
    return D.TransformedDistribution(
        base, [D.SigmoidTransform().inv, D.AffineTransform(loc=loc, scale=scale)]
    )


def test_logistic_matches_torch_construction():
    loc = torch.tensor([0.0, 0.3, -2.0], dtype=torch.float64)
    log_scale = torch.tensor([0.0, -2.0, 1.0], dtype=torch.float64)
    ours = Logistic(loc, log_scale)
    ref = torch_logistic(loc, log_scale.exp())
    x = torch.linspace(-3, 3, 41, dtype=torch.float64)[:, None]
    torch.testing.assert_close(ours.log_prob(x), ref.log_prob(x))
    torch.testing.assert_close(ours.cdf(x), ref.cdf(x))
    torch.testing.assert_close(ours.log_cdf(x), ref.cdf(x).log())
    torch.testing.assert_close(ours.scale, log_scale.exp())
    torch.testing.assert_close(ours.variance, log_scale.exp() ** 2 * math.pi**2 / 3)


def test_logistic_density_cdf_entropy_by_integration():
    loc, log_scale = torch.tensor(0.2, dtype=torch.float64), torch.tensor(-1.5, dtype=torch.float64)
    dist = Logistic(loc, log_scale)
    x = torch.linspace(-10, 10, 200_001, dtype=torch.float64)
    p = dist.log_prob(x).exp()
    assert torch.trapezoid(p, x).item() == pytest.approx(1.0, abs=1e-8)
    entropy = -torch.trapezoid(p * dist.log_prob(x), x)
    assert entropy.item() == pytest.approx(dist.entropy().item(), abs=1e-7)
    cumulative = torch.cumulative_trapezoid(p, x)
    torch.testing.assert_close(cumulative[::1000], dist.cdf(x[1:])[::1000], atol=1e-8, rtol=0)
    # Far left tail: log_cdf stays finite and exact where cdf underflows.
    far = torch.tensor(-1e3, dtype=torch.float32)
    tail = Logistic(torch.tensor(0.0), torch.tensor(0.0)).log_cdf(far)
    assert tail.item() == pytest.approx(-1e3)


def test_gaussian_matches_torch_normal():
    loc = torch.tensor([0.0, 0.3, -2.0], dtype=torch.float64)
    log_scale = torch.tensor([0.0, -2.0, 1.0], dtype=torch.float64)
    ours = Gaussian(loc, log_scale)
    ref = D.Normal(loc, log_scale.exp())
    x = torch.linspace(-3, 3, 41, dtype=torch.float64)[:, None]
    torch.testing.assert_close(ours.log_prob(x), ref.log_prob(x))
    torch.testing.assert_close(ours.cdf(x), ref.cdf(x))
    representable = ref.cdf(x) > 1e-12  # Normal.cdf (via erf) underflows earlier than ndtr
    torch.testing.assert_close(ours.log_cdf(x)[representable], ref.cdf(x).log()[representable])
    torch.testing.assert_close(ours.entropy(), ref.entropy())
    torch.testing.assert_close(ours.variance, ref.variance)
    assert math.isfinite(Gaussian(torch.tensor(0.0), torch.tensor(0.0)).log_cdf(-40.0).item())


def test_gaussian_kl_matches_torch():
    q_loc, p_loc = torch.randn(50, dtype=torch.float64), torch.randn(50, dtype=torch.float64)
    q_ls, p_ls = torch.randn(50, dtype=torch.float64), torch.randn(50, dtype=torch.float64)
    ref = D.kl_divergence(D.Normal(q_loc, q_ls.exp()), D.Normal(p_loc, p_ls.exp()))
    torch.testing.assert_close(gaussian_kl(q_loc, q_ls, p_loc, p_ls), ref)
    assert torch.allclose(gaussian_kl(q_loc, q_ls, q_loc, q_ls), torch.zeros(50).double())
    # float32 at the ClariNet clamp range: finite and equal to the float64 value.
    ls = torch.tensor([-9.0, 7.0])
    kl32 = gaussian_kl(torch.zeros(2), ls, torch.full((2,), 1e-3), ls.flip(0))
    kl64 = gaussian_kl(
        torch.zeros(2).double(), ls.double(), torch.full((2,), 1e-3).double(), ls.flip(0).double()
    )
    torch.testing.assert_close(kl32.double(), kl64, rtol=1e-5, atol=0)


@pytest.mark.parametrize("family", [Logistic, Gaussian])
def test_rsample_moments_and_gradients(family):
    loc = torch.tensor([0.3, -1.0], requires_grad=True)
    log_scale = torch.tensor([-1.0, 0.5], requires_grad=True)
    dist = family(loc, log_scale)
    n = 200_000
    x = dist.rsample((n,))
    assert x.shape == (n, 2) and torch.isfinite(x).all()
    sd = dist.variance.detach().sqrt()
    assert ((x.detach().mean(0) - loc.detach()).abs() < 5 * sd / math.sqrt(n)).all()
    torch.testing.assert_close(x.detach().var(0), dist.variance.detach(), rtol=0.03, atol=0)

    x.sum().backward()
    torch.testing.assert_close(loc.grad, torch.full((2,), float(n)))
    # d x / d log_scale = scale * z = x - loc
    torch.testing.assert_close(
        log_scale.grad, (x.detach() - loc.detach()).sum(0), rtol=1e-4, atol=1e-2
    )

    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(dist.sample((4,), generator=gen_a), dist.sample((4,), generator=gen_b))
    assert not dist.sample((4,)).requires_grad


# ----------------------------------------------------------------------------- mixture


MIXTURE_CASES = {
    # name: (K, log-scale range, mean range)
    "floor": (10, (LOG_SCALE_MIN, LOG_SCALE_MIN), (-1.0, 1.0)),
    "floor_k1": (1, (LOG_SCALE_MIN, LOG_SCALE_MIN), (-1.0, 1.0)),
    "sharp": (10, (-12.0, -8.0), (-1.0, 1.0)),
    "around_bin": (3, (-10.5, -9.0), (-1.0, 1.0)),
    "moderate": (10, (-8.0, -3.0), (-1.2, 1.2)),
    "wide": (10, (2.0, 2.0), (-1.0, 1.0)),
    "outside": (10, (-7.0, 0.0), (-3.0, 3.0)),
    "wide_k1": (1, (-1.0, 2.0), (-3.0, 3.0)),
}


def random_mixture(case: str, draws: int, dtype: torch.dtype) -> DiscretizedMixtureLogistics:
    """`draws` random mixtures with batch shape (draws, 1); the first has means at -1 and +1."""
    k, (ls_lo, ls_hi), (m_lo, m_hi) = MIXTURE_CASES[case]
    logits = torch.randn(draws, 1, k, dtype=dtype) * 2
    loc = torch.rand(draws, 1, k, dtype=dtype) * (m_hi - m_lo) + m_lo
    loc[0, 0, 0] = -1.0
    loc[1, 0, -1] = 1.0
    log_scale = torch.rand(draws, 1, k, dtype=dtype) * (ls_hi - ls_lo) + ls_lo
    return DiscretizedMixtureLogistics(logits, loc, log_scale)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", list(MIXTURE_CASES))
def test_mixture_sums_to_one_over_all_16bit_bins(case, dtype):
    dist = random_mixture(case, draws=3, dtype=dtype)
    log_p = dist.log_prob(bin_centers(dtype=dtype)[None, :])  # (3, 65536)
    assert log_p.shape == (3, NUM_BINS)
    assert torch.isfinite(log_p).all()
    assert log_p.max().item() <= 1e-6
    total = log_p.double().exp().sum(-1)
    torch.testing.assert_close(total, torch.ones(3, dtype=torch.float64), atol=1e-4, rtol=0)


def test_mixture_bin_masses_match_float64_reference():
    """Single logistics at every scale from the floor to very wide, against exact float64."""
    log_scales = torch.tensor(
        [LOG_SCALE_MIN, -13.0, -11.0, -9.5, -9.0, -8.5, -8.0, -6.0, -3.0, 0.0]
    )
    locs = torch.tensor([-0.999, -0.3, 0.001, 0.77, 0.99993])
    log_scale = log_scales[:, None, None].expand(-1, len(locs), 1).reshape(-1, 1, 1)
    loc = locs[None, :, None].expand(len(log_scales), -1, 1).reshape(-1, 1, 1)
    dist = DiscretizedMixtureLogistics(torch.zeros_like(loc), loc, log_scale)
    centers = bin_centers()
    ours = dist.log_prob(centers[None, :]).double()
    ref = reference_log_mass(centers[None, :], loc[..., 0], log_scale[..., 0])
    relevant = ref > math.log(1e-12)
    torch.testing.assert_close(ours[relevant], ref[relevant], atol=5e-5, rtol=0)


def test_edge_bins_take_the_tails():
    logits = torch.zeros(2, 1)
    loc = torch.tensor([[3.0], [-3.0]])
    dist = DiscretizedMixtureLogistics(logits, loc, torch.full((2, 1), -3.0))
    log_p = dist.log_prob(torch.tensor([1.0, -1.0]))
    assert (log_p.abs() < 1e-6).all()
    assert (dist.log_prob(torch.tensor([-1.0, 1.0])) < -40).all()
    # A floor-sharp component at exactly +1 puts (almost) all its mass in the last bin.
    sharp = DiscretizedMixtureLogistics(torch.zeros(1), torch.ones(1), torch.full((1,), -16.0))
    assert sharp.log_prob(torch.tensor(1.0)).item() > -1e-6


@pytest.mark.parametrize(
    "loc, log_scale",
    [
        (0.0, LOG_SCALE_MIN),  # at the floor
        (1.0, LOG_SCALE_MIN),  # floor, mean exactly at the right edge
        (-1.0, LOG_SCALE_MIN),
        (3.0, -5.0),  # mean far outside
        (-3.0, -5.0),
        (3.0, LOG_SCALE_MIN),
        (0.5, 3.0),  # huge scale
        (-3.0, 3.0),
    ],
)
def test_mixture_gradients_are_finite(loc, log_scale):
    k = 3
    logits = torch.randn(5, k, requires_grad=True)
    locs = (torch.tensor([loc, 0.2, -0.7]) + torch.zeros(5, k)).requires_grad_()
    log_scales = (torch.tensor([log_scale, log_scale, -9.0]) + torch.zeros(5, k)).requires_grad_()
    x = torch.tensor([-1.0, 1.0, 0.0, quantize(torch.tensor(0.999)).item(), -1.0 + 2 * HALF_BIN])
    log_p = DiscretizedMixtureLogistics(logits, locs, log_scales).log_prob(x)
    assert torch.isfinite(log_p).all() and (log_p <= 1e-6).all()
    log_p.sum().backward()
    for grad in (logits.grad, locs.grad, log_scales.grad):
        assert grad is not None and torch.isfinite(grad).all()
    assert logits.grad.abs().sum() > 0


def test_log_scale_floor_is_a_clamp():
    log_scale = torch.tensor([-20.0, LOG_SCALE_MIN, -5.0], requires_grad=True)
    dist = DiscretizedMixtureLogistics(torch.zeros(3), torch.zeros(3), log_scale)
    assert dist.log_scale.min().item() == LOG_SCALE_MIN
    dist.log_prob(torch.tensor(0.0)).backward()
    assert log_scale.grad[0].item() == 0.0
    assert torch.isfinite(log_scale.grad).all()


def exact_log_mass(index: int, loc: float, log_scale: float, num_bins: int = NUM_BINS) -> float:
    """The log mass of bin ``index`` under one logistic, in 50-digit decimal arithmetic from the
    exact bin edges (an independent reference: no float64 cancellation, no underflow)."""
    with decimal.localcontext() as ctx:
        ctx.prec = 50
        n1 = Decimal(num_bins - 1)
        upper, lower = (Decimal(2 * index + 1) - n1) / n1, (Decimal(2 * index - 1) - n1) / n1
        scale = Decimal(log_scale).exp()
        a, b = (upper - Decimal(loc)) / scale, (lower - Decimal(loc)) / scale

        def sigmoid(t: Decimal) -> Decimal:
            return 1 / (1 + (-t).exp())

        if index == 0:
            return float(sigmoid(a).ln())
        if index == num_bins - 1:
            return float(sigmoid(-b).ln())
        if b > 0:  # right of the mean: the complementary form keeps the tail's digits
            return float((sigmoid(-b) - sigmoid(-a)).ln())
        return float((sigmoid(a) - sigmoid(b)).ln())


def test_float64_log_prob_is_exact_at_every_scale():
    """float64 takes the CDF difference in narrow bins too (no midpoint rule): 1e-9 nats."""
    log_scales = torch.linspace(-12.0, 0.0, 13, dtype=torch.float64)
    locs = torch.tensor([-0.3, 0.0123, 0.9999], dtype=torch.float64)
    worst = 0.0
    for log_scale in log_scales.tolist():
        for loc in locs.tolist():
            near = loc + HALF_BIN * torch.arange(-4.0, 5.0, dtype=torch.float64) * 2
            x = torch.cat([torch.linspace(-1.0, 1.0, 21, dtype=torch.float64), near])
            x = x.clamp(-1.0, 1.0)
            dist = DiscretizedMixtureLogistics(
                torch.zeros(1, dtype=torch.float64),
                torch.tensor([loc], dtype=torch.float64),
                torch.tensor([log_scale], dtype=torch.float64),
            )
            ours = dist.log_prob(x)
            ref = [exact_log_mass(int(i), loc, log_scale) for i in bin_index(x)]
            worst = max(worst, (ours - torch.tensor(ref, dtype=torch.float64)).abs().max().item())
    assert worst < 1e-9


def test_underflow_fallback_far_from_all_components():
    """A bin ~190 scales away: the naive float32 mass is 0; ours is finite and right."""
    loc = torch.tensor([[-0.9, -0.85]])
    log_scale = torch.full((1, 2), math.log(0.01))  # bin width 0.003 scales: midpoint rule
    logits = torch.tensor([[0.3, -0.2]])
    dist = DiscretizedMixtureLogistics(logits, loc, log_scale)
    x = quantize(torch.tensor([0.95]))

    s = log_scale.exp()
    naive = torch.log(
        (
            torch.sigmoid((x[:, None] + HALF_BIN - loc) / s)
            - torch.sigmoid((x[:, None] - HALF_BIN - loc) / s)
        ).sum(-1)
    )
    assert torch.isneginf(naive).all()

    ours = dist.log_prob(x)
    ref = torch.logsumexp(
        torch.log_softmax(logits.double(), -1) + reference_log_mass(x[:, None], loc, log_scale),
        dim=-1,
    )
    assert torch.isfinite(ours).all() and ours.item() < -150
    torch.testing.assert_close(ours.double(), ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(ours, dist.log_density(x) + LOG_BIN_WIDTH, atol=1e-4, rtol=0)


def test_far_bin_of_a_sharp_component_uses_exact_difference():
    """Sharper than a bin: the midpoint rule would be far off, the CDF difference is exact."""
    loc, log_scale = torch.tensor([-0.5]), torch.tensor([-12.0])  # bin = 5 scales wide
    dist = DiscretizedMixtureLogistics(torch.zeros(1), loc, log_scale)
    x = quantize(torch.tensor([-0.4995, -0.5003]))
    ours = dist.log_prob(x)
    ref = reference_log_mass(x[:, None], loc, log_scale)[:, 0]
    assert (ref < -40).all()
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-4)
    # In the tail the midpoint rule is off by log(sinh(w / 2) / (w / 2)) = 0.88 for w = 5.
    assert ((dist.log_density(x) + LOG_BIN_WIDTH - ours).abs() > 0.5).all()


def test_log_density_integrates_to_one_and_matches_wide_bins():
    logits = torch.tensor([0.2, -1.0, 0.5], dtype=torch.float64)
    loc = torch.tensor([-0.4, 0.1, 0.45], dtype=torch.float64)
    log_scale = torch.tensor([-3.0, -2.0, -2.5], dtype=torch.float64)
    dist = DiscretizedMixtureLogistics(logits, loc, log_scale)
    grid = torch.linspace(-4, 4, 400_001, dtype=torch.float64)
    density = dist.log_density(grid).exp()
    assert torch.trapezoid(density, grid).item() == pytest.approx(1.0, abs=1e-7)

    dist32 = DiscretizedMixtureLogistics(logits.float(), loc.float(), log_scale.float())
    x = quantize(torch.rand(1000) * 1.8 - 0.9)
    torch.testing.assert_close(
        dist32.log_prob(x), dist32.log_density(x) + LOG_BIN_WIDTH, atol=1e-4, rtol=0
    )


def test_log_prob_gradient_wrt_x_is_straight_through():
    dist = DiscretizedMixtureLogistics(
        torch.tensor([0.0, 0.5]), torch.tensor([-0.2, 0.3]), torch.tensor([-3.0, -4.0])
    )
    x = quantize(torch.linspace(-0.9, 0.9, 25)).requires_grad_()
    (grad,) = torch.autograd.grad(dist.log_prob(x).sum(), x)
    x_ref = x.detach().clone().requires_grad_()
    (grad_ref,) = torch.autograd.grad(dist.log_density(x_ref).sum(), x_ref)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-3, atol=1e-2)

    sharp = DiscretizedMixtureLogistics(torch.zeros(1), torch.zeros(1), torch.full((1,), -14.0))
    x = torch.tensor([0.0, 2 * HALF_BIN, -1.0, 1.0], requires_grad=True)
    sharp.log_prob(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_mixture_sample_weights_and_range():
    n = 40_000
    weights = torch.tensor([0.3, 0.7])
    dist = DiscretizedMixtureLogistics(
        weights.log().expand(n, 2),
        torch.tensor([-0.5, 0.5]).expand(n, 2),
        torch.full((n, 2), -4.0),
    )
    gen = torch.Generator().manual_seed(1)
    x = dist.sample(generator=gen)
    assert x.shape == (n,) and not x.requires_grad
    assert (x < 0).float().mean().item() == pytest.approx(0.3, abs=0.015)
    assert ((x + 0.5).abs() < 0.2).float().mean().item() == pytest.approx(0.3, abs=0.015)
    assert ((x - 0.5).abs() < 0.2).float().mean().item() == pytest.approx(0.7, abs=0.015)

    wide = DiscretizedMixtureLogistics(
        torch.zeros(n, 2), torch.tensor([0.95, -0.95]).expand(n, 2), torch.zeros(n, 2)
    )
    y = wide.sample()
    assert y.min().item() == -1.0 and y.max().item() == 1.0
    torch.testing.assert_close(wide.mean(), torch.zeros(n), atol=1e-6, rtol=0)


def test_mixture_samples_follow_log_prob():
    """Histogram of quantized samples (8-bit bins) matches exp(log_prob) over all bins."""
    num_bins, n = 256, 100_000
    params = dict(
        logit_probs=torch.tensor([0.0, 1.0, -0.5]),
        loc=torch.tensor([-0.97, 0.1, 1.2]),
        log_scale=torch.tensor([-3.0, -5.5, -2.0]),
        num_bins=num_bins,
        log_scale_min=-7.0,
    )
    dist = DiscretizedMixtureLogistics(**params)
    probs = dist.log_prob(bin_centers(num_bins)).exp()
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-5)
    batch = DiscretizedMixtureLogistics(
        **{k: v.expand(n, 3) if torch.is_tensor(v) else v for k, v in params.items()}
    )
    counts = torch.bincount(bin_index(batch.sample(), num_bins), minlength=num_bins)
    total_variation = 0.5 * (counts / n - probs).abs().sum().item()
    assert total_variation < 0.03


def test_half_precision_parameters_are_upcast():
    params = torch.randn(2, 30, 7).bfloat16()
    dist = DiscretizedMixtureLogistics.from_channels(params)
    assert dist.loc.dtype == torch.float32
    log_p = dist.log_prob(torch.tensor([-1.0, 1.0]).repeat(2, 4)[:, :7].bfloat16())
    assert log_p.dtype == torch.float32 and torch.isfinite(log_p).all()
    assert Logistic(torch.zeros(2).half(), torch.zeros(2).half()).rsample().dtype == torch.float32


def test_from_channels_layout():
    b, k, t = 2, 3, 5
    params = torch.arange(b * 3 * k * t, dtype=torch.float32).reshape(b, 3 * k, t)
    dist = DiscretizedMixtureLogistics.from_channels(params)
    assert dist.batch_shape == (b, t) and dist.num_components == k
    for bi in range(b):
        for ti in range(t):
            for ki in range(k):
                assert dist.logit_probs[bi, ti, ki] == params[bi, ki, ti]
                assert dist.loc[bi, ti, ki] == params[bi, k + ki, ti]
                assert dist.log_scale[bi, ti, ki] == params[bi, 2 * k + ki, ti]
    assert dist.log_prob(torch.zeros(b, t)).shape == (b, t)
    with pytest.raises(ValueError):
        DiscretizedMixtureLogistics.from_channels(torch.zeros(2, 4, 5))


def test_high_log_scale_floor_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="pwavenet.models.distributions"):
        DiscretizedMixtureLogistics(
            torch.zeros(1), torch.zeros(1), torch.zeros(1), log_scale_min=-7.0123
        )
    assert "log_scale_min" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pwavenet.models.distributions"):
        DiscretizedMixtureLogistics(
            torch.zeros(1), torch.zeros(1), torch.zeros(1), num_bins=256, log_scale_min=-7.0123
        )
    assert caplog.text == ""
