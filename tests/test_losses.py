"""Distillation losses against closed forms and constructed cases with known answers."""

from __future__ import annotations

import math

import pytest
import torch
from test_student import mel_for, tiny_student

from pwavenet.models.distributions import (
    DiscretizedMixtureLogistics,
    Gaussian,
    Logistic,
    gaussian_kl,
)
from pwavenet.models.teacher import WaveNet
from pwavenet.train.losses import (
    gaussian_kl_regularized,
    log_power_loss,
    loudness_loss,
    magnitude_loss,
    monte_carlo_kl,
    mrstft_loss,
    power_loss,
)


def test_kl_is_zero_when_the_teacher_conditional_is_the_students():
    # A "teacher" whose conditional p_T(x_t | x_<t) is the student's own: it recovers the noise
    # of x_<t with the sequential inverse and re-runs the flows, as a one-component mixture.
    student = tiny_student().requires_grad_(False)
    mel = mel_for(200, batch=2)
    z = student.noise([200, 200], torch.Generator().manual_seed(0)).double()
    out = student(z, mel)
    z_back, _ = student.inverse(out.x, mel)
    again = student(z_back, mel)
    teacher = DiscretizedMixtureLogistics(
        torch.zeros(2, 200, 1), again.loc[..., None], again.log_scale[..., None]
    )
    q = Logistic(out.loc, out.log_scale)
    est = monte_carlo_kl(teacher.log_density, q, 64, generator=torch.Generator().manual_seed(1))
    se = float(est.draws.std()) / math.sqrt(64)
    assert abs(float(est.kl.mean())) < 4 * se + 1e-4, (float(est.kl.mean()), se)
    assert se < 0.05
    # ... and clearly positive against a teacher that is off by half a scale.
    shifted = Logistic(again.loc + 0.5 * again.log_scale.exp(), again.log_scale)
    off = monte_carlo_kl(shifted.log_density, q, 64, generator=torch.Generator().manual_seed(1))
    assert float(off.kl.mean()) > 0.02 + 4 * se


def test_gaussian_monte_carlo_matches_the_closed_form():
    g = torch.Generator().manual_seed(2)
    q = Gaussian(torch.randn(3, 300, generator=g) * 0.1, torch.randn(3, 300, generator=g) - 3)
    p = Gaussian(q.loc + torch.randn(3, 300, generator=g) * 0.05, q.log_scale + 0.3)
    est = monte_carlo_kl(p.log_density, q, 200, generator=g)
    closed = gaussian_kl(q.loc, q.log_scale, p.loc, p.log_scale).mean()
    se = float(est.draws.std()) / math.sqrt(200)
    assert abs(float(est.kl.mean()) - float(closed)) < 4 * se, (est.kl.mean(), closed, se)
    # The regulariser adds lambda * (log sigma_p - log sigma_q)^2 = 4 * 0.09 per step.
    reg = gaussian_kl_regularized(q, p, 4.0).mean()
    torch.testing.assert_close(reg, closed + 4 * 0.09, atol=1e-5, rtol=0)


def test_gradient_reaches_the_student_through_the_teachers_input():
    teacher = WaveNet(
        n_mels=4, layers=3, cycles=1, residual_channels=8, gate_channels=8, skip_channels=8,
        mixtures=2, upsample_scales=[2, 2],
    ).eval().requires_grad_(False)  # fmt: skip
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = tiny_student().float()
    mel = mel_for(64).float()
    out = student(student.noise([64], torch.Generator().manual_seed(3)), mel)
    x = out.x.detach().requires_grad_(True)  # the teacher's input, as the student made it
    params = teacher(x[:, None], mel)
    q = Logistic(out.loc, out.log_scale)
    est = monte_carlo_kl(teacher.distribution(params).log_density, q, 8)
    est.kl.mean().backward()
    assert float(x.grad.abs().sum()) > 0  # the KL depends on the teacher's input
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())


def _speechy(n: int = 8000, seed: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 8000
    return 0.3 * torch.sin(2 * math.pi * 180 * t)[None] + 0.02 * torch.randn(1, n, generator=g)


@pytest.mark.parametrize("fn", [power_loss, magnitude_loss])
def test_spectral_losses_zero_for_identical_and_known_for_a_gain(fn):
    y = _speechy()
    assert float(fn(y, y, 256, 64, 256)) == 0.0
    gain = 0.5
    # phi = |STFT|^2 scales by gain^2, |STFT| by gain: the normalised losses are known.
    expected = (gain**2 - 1) ** 2 if fn is power_loss else (gain - 1) ** 2
    torch.testing.assert_close(float(fn(gain * y, y, 256, 64, 256)), expected, rtol=1e-3, atol=0)


def test_mrstft_zero_for_identical_and_grows_with_a_gain():
    y = _speechy()
    assert float(mrstft_loss(y, y)) == 0.0
    # Spectral convergence |1 - g| plus the log-magnitude L1 |log g| where above the floor.
    loss = float(mrstft_loss(0.5 * y, y))
    assert 0.5 < loss < 0.5 + math.log(2) + 1e-3
    assert float(mrstft_loss(0.9 * y, y)) < loss


def test_spectral_losses_have_finite_gradients_on_silence():
    x = torch.zeros(2, 1024, requires_grad=True)
    y = torch.zeros(2, 1024)
    for loss in (power_loss(x, y, 256, 64, 256), mrstft_loss(x, y)):
        (grad,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(grad).all()


def test_log_power_loss_is_the_squared_log_gain():
    y = _speechy()
    assert float(log_power_loss(y, y, 256, 64, 256)) == 0.0
    # Every bin's time-averaged power scales by g^2 (the floor e is 1e-4 of the mean power).
    loss = float(log_power_loss(0.5 * y, y, 256, 64, 256, floor=0.0))
    assert abs(loss - (2 * math.log(0.5)) ** 2) < 1e-3


def test_loudness_loss_is_the_squared_log_gain_and_follows_the_envelope():
    y = _speechy()
    y[:, 4000:] *= 0.05  # loud, then quiet
    assert float(loudness_loss(y, y, 256, 64)) == 0.0
    loss = float(loudness_loss(0.5 * y, y, 256, 64, floor=0.0))
    assert abs(loss - (2 * math.log(0.5)) ** 2) < 1e-4
    # Same overall energy but a flattened envelope is penalised; the loss has a gradient there.
    flat = (y.pow(2).mean(-1, keepdim=True).sqrt() * torch.randn_like(y)).requires_grad_(True)
    level = loudness_loss(flat, y, 256, 64)
    assert float(level.detach()) > 0.05
    (grad,) = torch.autograd.grad(level, flat)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
