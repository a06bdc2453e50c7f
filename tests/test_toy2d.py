"""2-D toy densities: the targets, the three ways of fitting, the seeds' diagnostic, the recipe."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pwavenet.cli import toy2d_main as main
from pwavenet.toy.autoregressive import autoregressive_flow
from pwavenet.toy.fitting import (
    distill,
    fit_maximum_likelihood,
    fit_reverse_kl,
    one_thread,
    reverse_kl,
)
from pwavenet.toy.targets import SHAPES, make_target
from pwavenet.toy.toy2d import Toy2dError, ks_distance, run_toy2d

BANANA_ENTROPY = math.log(2 * math.pi * math.e) + math.log(2.0)  # H(x2) + H(x1 | x2), std 2 and 1


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():  # tiny tensors: a second thread only waits for a busy core
        yield


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", SHAPES)
def test_targets_are_normalised(name):
    target = make_target(name)
    x0, x1, y0, y1 = target.extent
    n = 250  # grid spacing under 0.1: at most half of the smallest std (0.2)
    xs = torch.linspace(x0 - 4, x1 + 4, n, dtype=torch.float64)
    ys = torch.linspace(y0 - 4, y1 + 4, n, dtype=torch.float64)
    grid = torch.cartesian_prod(xs, ys)
    mass = target.log_density(grid).exp().sum() * (xs[1] - xs[0]) * (ys[1] - ys[0])
    assert float(mass) == pytest.approx(1.0, abs=2e-3)


def test_banana_samples_match_its_density():
    target = make_target("banana")
    x = target.sample(40_000, gen(0))
    # E[log p] over exact samples is minus the closed-form entropy; x2 is N(0, 2^2).
    assert float(target.log_density(x).mean()) == pytest.approx(-BANANA_ENTROPY, abs=0.03)
    assert float(x[:, 1].std()) == pytest.approx(2.0, rel=0.02)
    assert float(x[:, 0].mean()) == pytest.approx(1.0, abs=0.03)  # E[x2^2 / 4] = 1


def test_ks_distance_against_scipy_and_its_null_scale():
    stats = pytest.importorskip("scipy.stats")
    u = torch.randn(500, 2, generator=gen(1), dtype=torch.float64)
    u[:, 1] = u[:, 1] * 1.3 + 0.2
    ours = ks_distance(u, torch.special.ndtr)
    for d in range(2):
        assert float(ours[d]) == pytest.approx(stats.kstest(u[:, d].numpy(), "norm").statistic)
    assert float(ours[0]) < 1.36 / math.sqrt(500) < float(ours[1])


@pytest.fixture(scope="module")
def banana_fits():
    """A single MADE and a 5-layer MAF fitted by maximum likelihood to seed 002's density."""
    target = make_target("banana")
    g = gen(10)
    train, test = target.sample(4_000, g), target.sample(4_000, g)
    fits = {}
    for name, layers in (("MADE", 1), ("MAF", 5)):
        torch.manual_seed(0)
        model = autoregressive_flow("maf", features=2, layers=layers, hidden=(32, 32))
        fit_maximum_likelihood(model, train, steps=400, batch_size=512, lr=3e-3)
        fits[name] = model.eval()
    return target, train, test, fits


def test_maf_likelihood_comes_close_to_the_true_density(banana_fits):
    target, _, test, fits = banana_fits
    with torch.no_grad():
        true_ll = float(target.log_density(test).mean())
        maf_ll = float(fits["MAF"].log_prob(test).mean())
        made_ll = float(fits["MADE"].log_prob(test).mean())
    # Measured over seeds: MAF within 0.004-0.006 nats of the truth, a single MADE 0.42-0.48
    # below it (its Gaussian conditionals in the order (x1, x2) cannot fit the skewed p(x1)).
    assert true_ll - maf_ll < 0.05
    assert true_ll - made_ll > 0.2


def test_seed_diagnostic_rejects_a_single_made_and_accepts_the_maf(banana_fits):
    # Seed 002: map the training data to noise; a poor fit leaves it visibly non-Gaussian.
    # Measured over seeds: MADE at 5.4x the 95 % critical value, the MAF at 0.5-1x.
    _, train, _, fits = banana_fits
    critical = 1.36 / math.sqrt(train.shape[0])
    with torch.no_grad():
        ks = {
            n: float(ks_distance(m.flow.inverse(train)[0], torch.special.ndtr).max())
            for n, m in fits.items()
        }
    assert ks["MADE"] > 3 * critical
    assert ks["MAF"] < 2 * critical


def test_reverse_kl_iaf_fits_the_seed_density_from_its_log_density_alone():
    target = make_target("banana")
    torch.manual_seed(0)
    model = autoregressive_flow("iaf", features=2, layers=3, hidden=(32, 32))
    # The log density is only known up to a constant: the fit cannot tell.
    losses = fit_reverse_kl(
        model, lambda x: target.log_density(x) + 7.0, steps=300, batch_size=256, lr=3e-3
    )
    with torch.no_grad():
        kl = float(reverse_kl(model, target.log_density, 20_000, gen(5)))
    assert losses[0] + 7.0 > 0.3  # the loss is KL - 7; the untrained IAF is its base: KL 0.35
    assert kl < 0.02  # measured 0.001-0.003 over seeds


def test_distillation_cuts_the_students_kl_to_its_teacher(banana_fits):
    teacher = banana_fits[3]["MAF"]
    torch.manual_seed(1)
    student = autoregressive_flow("iaf", features=2, layers=3, hidden=(32, 32))
    kl = distill(student, teacher, steps=300, batch_size=256, lr=3e-3, eval_samples=10_000)
    # The untrained student is its base: KL 0.43 nats; measured after: 0.002-0.003 over seeds.
    assert kl["kl_teacher_before"] > 0.3
    assert kl["kl_teacher_after"] < kl["kl_teacher_before"] / 30
    assert not any(p.requires_grad for p in teacher.parameters())  # the teacher stays frozen


def test_fits_are_deterministic_for_a_seed():
    target = make_target("moons")
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = autoregressive_flow("iaf", features=2, layers=2, hidden=(8,))
        runs.append(fit_reverse_kl(model, target.log_density, steps=20, batch_size=64, lr=1e-2))
    assert runs[0] == runs[1]


def test_quick_recipe_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "toy"
    assert main(["--out", str(out), "--quick", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    for name in ("toy2d.png", "toy2d_diagnostic.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((out / "toy2d.json").read_text())
    assert result["quick"] is True and result["seed"] == 1
    table = (out / "toy2d.md").read_text()
    assert table.splitlines()[0] in printed
    for shape in SHAPES:
        rows = result["shapes"][shape]["models"]
        assert set(rows) == {
            "true density",
            "MADE",
            "MAF",
            "Real NVP",
            "NICE",
            "IAF",
            "planar",
            "IAF student",
        }
        for name, row in rows.items():
            assert f"| {shape} | {name} |" in table
            for key, value in row.items():
                assert key == "fit" or math.isfinite(value), (shape, name, key)
        assert rows["IAF student"]["kl_teacher_after"] < rows["IAF student"]["kl_teacher_before"]
    assert not list(out.glob(".*"))  # nothing half-written left behind


def test_bad_out_is_a_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(Toy2dError, match="not a folder"):
        run_toy2d(blocker, quick=True)
    assert main(["--out", str(blocker / "sub"), "--quick"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pwavenet: error: ") and err.count("\n") == 1
