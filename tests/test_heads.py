"""The teacher's output heads: one object per distribution, looked up by name."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pwavenet.models.distributions import HALF_BIN, DiscretizedMixtureLogistics, Gaussian
from pwavenet.models.heads import HEADS, GaussianHead, MoLHead, OutputHead
from pwavenet.models.teacher import WaveNet


def head(name: str) -> OutputHead:
    return HEADS[name].from_settings(mixtures=3, log_scale_min=-14.0)


def params_for(h: OutputHead, batch: int = 4, steps: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, h.channels, steps, generator=g) * 0.5


@pytest.mark.parametrize("name", list(HEADS))
def test_head_channels_make_a_distribution_over_16_bit_samples(name):
    h = head(name)
    params = params_for(h)
    assert h.distribution(params).batch_shape == (4, 5)
    audio = torch.rand(4, 5, generator=torch.Generator().manual_seed(1)) * 2 - 1
    lp = h.log_prob(params, audio)
    assert lp.shape == (4, 5) and torch.isfinite(lp).all() and (lp <= 1e-6).all()


def test_gaussian_head_scores_the_density_times_the_bin_width_with_clamped_log_sigma():
    h = GaussianHead()
    params = params_for(h)
    params[:, 1] = -12.0  # below ClariNet's clamp
    audio = torch.rand(4, 5, generator=torch.Generator().manual_seed(2)) * 2 - 1
    expected = Gaussian(params[:, 0], torch.full_like(audio, -9.0)).log_prob(audio)
    torch.testing.assert_close(h.log_prob(params, audio), expected + math.log(2 * HALF_BIN))


@pytest.mark.parametrize("name", list(HEADS))
def test_init_bias_sets_every_log_scale(name):
    h = head(name)
    bias = torch.zeros(h.channels)
    h.init_bias(bias, -3.5)
    dist = h.distribution(bias[None, :, None])
    assert torch.all(dist.log_scale == -3.5)
    assert torch.all(dist.loc == 0)


@pytest.mark.parametrize("name", list(HEADS))
def test_numpy_and_torch_samplers_agree(name):
    h = head(name)
    params = params_for(h)[..., 0]  # one step: (B, C)
    noise = h.noise(4, 1, torch.Generator().manual_seed(3), torch.device("cpu"))[0]
    like = np.empty(0, dtype=np.float64)
    as_numpy = h.sampler(4, like)(params.double().numpy(), noise.double().numpy())
    as_torch = h.sampler(4, params)(params, noise)
    assert as_torch.shape == (4,) and (as_torch.abs() <= 1).all()
    torch.testing.assert_close(torch.from_numpy(as_numpy).float(), as_torch, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", list(HEADS))
def test_noise_of_a_batch_is_the_noise_of_its_utterances(name):
    h = head(name)
    together = h.noise(2, 7, [torch.Generator().manual_seed(s) for s in (4, 5)], "cpu")
    assert together.shape == (7, 2, h.variates)
    for b, seed in enumerate((4, 5)):
        alone = h.noise(1, 7, torch.Generator().manual_seed(seed), "cpu")
        torch.testing.assert_close(together[:, b : b + 1], alone, atol=0, rtol=0)


def test_mixture_distribution_and_generation_share_one_sampler():
    h = MoLHead(mixtures=3, log_scale_min=-14.0)
    params = params_for(h, batch=6, steps=1)
    dist = DiscretizedMixtureLogistics.from_channels(params, log_scale_min=-14.0)
    drawn = dist.sample(torch.Generator().manual_seed(6))  # (6, 1)
    # The distribution draws K uniforms per element, then one more: the same variates, fed to
    # the head's per-step sampler, give the same samples.
    g = torch.Generator().manual_seed(6)
    eps = torch.finfo(torch.float32).eps
    u = torch.cat([torch.rand(6, 1, 3, generator=g), torch.rand(6, 1, generator=g)[..., None]], -1)
    noise = h.standard_variates(u.clamp(eps, 1 - eps))[:, 0]
    stepped = h.sampler(6, params)(params[..., 0], noise)
    torch.testing.assert_close(stepped, drawn[:, 0], atol=0, rtol=0)


def test_unknown_output_names_the_known_heads():
    with pytest.raises(ValueError, match="output must be 'mol' or 'gaussian', got 'mulaw'"):
        WaveNet(output="mulaw")
