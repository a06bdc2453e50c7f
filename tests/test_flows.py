"""The toy flow family: the shared flow contract, MADE's masks, the planar constraint, the model."""

from __future__ import annotations

import math

import pytest
import torch
from flow_contract import assert_lower_triangular, check_bijection, check_flow, jacobian

from pwavenet.toy.autoregressive import IAF, MADE, MAF, autoregressive_flow
from pwavenet.toy.base import Composite, FlowModel, Permutation, Rescaling, StandardBase
from pwavenet.toy.coupling import (
    AdditiveCoupling,
    AffineCoupling,
    additive_couplings,
    affine_couplings,
)
from pwavenet.toy.fitting import one_thread
from pwavenet.toy.planar import Planar, planar_flow

D = 4
HIDDEN = (12, 12)
MASK = torch.tensor([1, 0, 1, 0])


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():  # tiny tensors: a second thread only waits for a busy core
        yield


def randomize(module: torch.nn.Module, seed: int = 0, std: float = 0.4) -> torch.nn.Module:
    """Every parameter drawn at random (output layers start at zero) and float64."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module.double()


def points(n: int = 4, features: int = D, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, features, generator=torch.Generator().manual_seed(seed)).double()


FLOWS = {
    "maf": lambda: MAF(features=D, hidden=HIDDEN),
    "maf-random-order": lambda: MAF(features=D, hidden=HIDDEN, order="random", seed=3),
    "iaf": lambda: IAF(features=D, hidden=HIDDEN),
    "iaf-reversed": lambda: IAF(features=D, hidden=HIDDEN, order="reversed"),
    "nice": lambda: AdditiveCoupling(MASK, HIDDEN),
    "realnvp": lambda: AffineCoupling(MASK, HIDDEN),
    "planar": lambda: Planar(D),
    "permutation": lambda: Permutation.random(D, seed=2),
    "rescaling": lambda: Rescaling(D),
    "composite": lambda: Composite(
        [MAF(features=D, hidden=HIDDEN), Permutation.reverse(D), AffineCoupling(MASK, HIDDEN)]
    ),
}


@pytest.mark.parametrize("name", FLOWS)
def test_every_flow_inverts_and_its_logdet_is_autograds(name):
    check_bijection(randomize(FLOWS[name]()), points())


@pytest.mark.parametrize("layer", [MAF, IAF])
def test_autoregressive_layers_keep_the_student_contract(layer):
    # Natural order: the shared helper's triangularity check applies as it does to the student.
    check_flow(randomize(layer(features=D, hidden=HIDDEN)), points(1), None)


@pytest.mark.parametrize(
    ("order", "seed"),
    [("natural", 0), ("reversed", 0), ("random", 0), ("random", 1), ("random", 7)],
)
@pytest.mark.parametrize("hidden", [(), (9,), (16, 8, 16)])
def test_made_is_strictly_triangular_in_its_ordering(order, seed, hidden):
    made = randomize(MADE(features=5, hidden=hidden, order=order, seed=seed))
    perm = made.order
    if order == "natural":
        assert perm.tolist() == [0, 1, 2, 3, 4]
    elif order == "reversed":
        assert perm.tolist() == [4, 3, 2, 1, 0]
    x = points(1, 5)[0]
    for k in range(2):  # loc, then log-scale
        jac = jacobian(lambda v: made(v[None])[k][0], x)  # noqa: B023
        assert_lower_triangular(jac[perm][:, perm], strict=True)


def test_made_orders_differ_between_random_seeds():
    orders = {tuple(MADE(features=6, order="random", seed=s).order.tolist()) for s in range(4)}
    assert len(orders) > 1


@pytest.mark.parametrize("raw_wu", [-3.0, -50.0])
def test_planar_constraint_holds_for_adversarial_u(raw_wu):
    flow = Planar(2).double()
    w = torch.tensor([1.5, -0.5], dtype=torch.float64)
    with torch.no_grad():
        flow.w.copy_(w)
        flow.u.copy_(raw_wu / (w @ w) * w)  # raw u would fold the plane: 1 + w . u < 0
        flow.b.fill_(0.3)
        assert float(flow.w @ flow.u) == pytest.approx(raw_wu)
        wu_hat = float(flow.w @ flow.constrained()[0])
    assert wu_hat >= -1 - 1e-12  # m(-50) = -1 + 2e-22 equals -1 up to float64 rounding
    assert wu_hat == pytest.approx(-1 + math.log1p(math.exp(raw_wu)), abs=1e-12)
    # At the steepest point of tanh (w . z + b = 0) the map is at its most contracting: the
    # Jacobian determinant 1 + m stays positive, and its log stays finite even when 1 + m
    # underflows in the naive form.
    z0 = (-0.3 / (w @ w) * w)[None]
    with torch.no_grad():
        logdet = flow(z0)[1]
    assert float(logdet) == pytest.approx(math.log(math.log1p(math.exp(raw_wu))), rel=1e-9)
    if raw_wu > -10:
        jac = jacobian(lambda v: flow(v[None])[0][0], z0[0])
        assert float(torch.linalg.det(jac)) == pytest.approx(math.exp(float(logdet)), rel=1e-9)
    check_bijection(flow, points(6, 2) * 3, atol=1e-6)


def test_planar_with_zero_w_is_a_shift():
    flow = Planar(3).double()
    with torch.no_grad():
        flow.w.zero_()
    z = points(3, 3)
    x, logdet = flow(z)
    assert torch.isfinite(x).all()
    torch.testing.assert_close(logdet, torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(flow.inverse(x)[0], z)


def test_composite_sums_logdets_and_inverts_in_reverse_order():
    parts = [randomize(FLOWS[n](), seed=i) for i, n in enumerate(("maf", "planar", "realnvp"))]
    flow = Composite(parts)
    z = points()
    x, logdet = flow(z)
    v, expected = z, torch.zeros(z.shape[0], dtype=z.dtype)
    for part in parts:
        v, ld = part(v)
        expected = expected + ld
    torch.testing.assert_close(x, v)
    torch.testing.assert_close(logdet, expected)
    back = x
    for part in reversed(parts):
        back = part.inverse(back)[0]
    torch.testing.assert_close(flow.inverse(x)[0], back)
    torch.testing.assert_close(back, z)


BUILDERS = {
    "maf": lambda base: autoregressive_flow("maf", features=2, layers=3, hidden=(8,), base=base),
    "iaf": lambda base: autoregressive_flow("iaf", features=2, layers=3, hidden=(8,), base=base),
    "realnvp": lambda base: affine_couplings(features=2, layers=3, hidden=(8,)),
    "nice": lambda base: additive_couplings(features=2, layers=3, hidden=(8,)),
    "planar": lambda base: planar_flow(features=2, layers=3),
}


@pytest.mark.parametrize("base", ["gaussian", "logistic"])
@pytest.mark.parametrize("name", BUILDERS)
def test_model_density_integrates_to_one(name, base):
    model = randomize(BUILDERS[name](base), std=0.3)
    edges = torch.linspace(-12, 12, 301, dtype=torch.float64)
    mid = 0.5 * (edges[1:] + edges[:-1])
    grid = torch.cartesian_prod(mid, mid)
    with torch.no_grad():
        mass = model.log_prob(grid).exp().sum() * (edges[1] - edges[0]) ** 2
    assert float(mass) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("name", BUILDERS)
def test_sample_log_prob_matches_the_density(name):
    # The forward pass's own score (how an IAF scores its samples) equals log_prob through the
    # inverse (the slow path for an IAF, the fast one for a MAF).
    model = randomize(BUILDERS[name]("logistic"))
    g = torch.Generator().manual_seed(3)
    x, log_q = model.rsample_with_log_prob(16, g)
    with torch.no_grad():
        torch.testing.assert_close(model.log_prob(x), log_q)
    again = model.sample(16, torch.Generator().manual_seed(3))
    torch.testing.assert_close(again, x.detach())


def test_reversals_between_layers_make_a_stack_non_triangular():
    # One order throughout would keep x_1 a function of z_1 only; a reversal mixes both ways.
    model = randomize(autoregressive_flow("maf", features=2, layers=2, hidden=(8,)))
    jac = jacobian(lambda v: model.flow(v[None])[0][0], points(1, 2)[0])
    assert (jac.abs() > 1e-8).all()


def test_contract_errors():
    with pytest.raises(ValueError, match="unconditional"):
        Rescaling(2)(torch.zeros(1, 2), torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match="order"):
        MADE(features=2, order="sideways")
    with pytest.raises(ValueError, match="family"):
        StandardBase(2, "cauchy")
    assert isinstance(autoregressive_flow("iaf", features=2, layers=1), FlowModel)
