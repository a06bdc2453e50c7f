"""The IAF student: flow contract, causality, the composition formula, synthesis paths."""

from __future__ import annotations

import math

import pytest
import torch
from flow_contract import assert_lower_triangular, check_flow, jacobian

from pwavenet.models import student as student_module
from pwavenet.models.student import IAFFlow, Student

TINY = {
    "n_mels": 4,
    "flow_layers": [2, 3],
    "layers_per_cycle": 2,
    "kernel_size": 3,
    "residual_channels": 6,
    "gate_channels": 8,
    "upsample_scales": [2, 2],
    "log_scale_init": -1.0,
}


def randomize(module: torch.nn.Module, seed: int = 0, std: float = 0.3) -> torch.nn.Module:
    """Non-trivial output layers (they start at zero): every parameter drawn at random."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


def tiny_student(**kw) -> Student:
    return randomize(Student(**{**TINY, **kw})).double()


def mel_for(steps: int, seed: int = 1, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, steps // 4, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("layers", [1, 3])
def test_every_flow_keeps_the_flow_contract(layers):
    flow = randomize(IAFFlow(cond_channels=4, layers=layers, residual_channels=6, gate_channels=8))
    flow = flow.double()
    g = torch.Generator().manual_seed(2)
    z = torch.randn(1, 24, generator=g, dtype=torch.float64)
    cond = torch.randn(1, 4, 24, generator=g, dtype=torch.float64)
    check_flow(flow, z, cond)
    # mu_t and s_t never see z_t: their Jacobians are strictly lower triangular.
    for k in range(2):
        jac = jacobian(lambda v: flow.params(v[None], cond)[k][0], z[0])  # noqa: B023
        assert_lower_triangular(jac, strict=True)


def test_stack_is_causal_and_its_parameters_never_see_the_current_step():
    model = tiny_student()
    mel = mel_for(32)
    cond = model.features(mel)
    z = torch.randn(32, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert_lower_triangular(jacobian(lambda v: model.transform(v[None], cond).x[0], z))
    for k in (1, 2):  # loc (mu_tot) and log_scale (log s_tot)
        jac = jacobian(lambda v: model.transform(v[None], cond)[k][0], z)  # noqa: B023
        assert_lower_triangular(jac, strict=True)


def test_composition_equals_the_flows_one_by_one():
    model = tiny_student()
    mel = mel_for(40, batch=2)
    cond = model.features(mel)
    z = torch.randn(2, 40, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    out = model(z, mel)
    x, total = z, torch.zeros(2, dtype=torch.float64)
    for flow in model.flows:
        x, logdet = flow(x, cond)
        total = total + logdet
    torch.testing.assert_close(out.x, x, atol=1e-12, rtol=0)
    torch.testing.assert_close(out.log_scale.sum(-1), total, atol=1e-10, rtol=0)
    # One logistic per step: x = mu_tot + s_tot * z.
    torch.testing.assert_close(out.x, out.loc + out.log_scale.exp() * z, atol=1e-12, rtol=0)


def test_own_sample_density_equals_change_of_variables():
    model = tiny_student()
    mel = mel_for(20)
    cond = model.features(mel)
    z = torch.randn(1, 20, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out = model(z, mel)
    one_pass = model.distribution(out.loc, out.log_scale).log_prob(out.x).sum()
    jac = jacobian(lambda v: model.transform(v[None], cond).x[0], z[0])
    _, logabs = torch.linalg.slogdet(jac)
    base = model.distribution(torch.zeros_like(z), torch.zeros_like(z)).log_prob(z).sum()
    torch.testing.assert_close(one_pass, base - logabs, atol=1e-9, rtol=0)
    # The sequential inverse gives the same density for the same audio.
    torch.testing.assert_close(model.log_prob(out.x, mel).sum(), one_pass, atol=1e-9, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inverse_recovers_the_noise(dtype):
    model = tiny_student().to(dtype)
    mel = mel_for(48, batch=2).to(dtype)
    z = model.noise([48, 48], torch.Generator().manual_seed(6)).to(dtype)
    x = model(z, mel).x
    back, _ = model.inverse(x, mel)
    torch.testing.assert_close(back, z, atol=1e-4 if dtype == torch.float32 else 1e-9, rtol=0)


def test_gaussian_base_is_the_clarinet_student():
    model = tiny_student(base="gaussian")
    z = model.noise([4000], torch.Generator().manual_seed(7))
    assert abs(float(z.std()) - 1.0) < 0.05  # standard normal, not logistic (std pi/sqrt 3)
    out = model(z.double(), mel_for(4000))
    lp = model.distribution(out.loc, out.log_scale).log_prob(out.x)
    expected = -0.5 * z.double() ** 2 - 0.5 * math.log(2 * math.pi) - out.log_scale
    torch.testing.assert_close(lp, expected, atol=1e-9, rtol=0)


def test_initial_scale_is_log_scale_init():
    model = Student(**{**TINY, "log_scale_init": -4.0})
    z = model.noise([64], torch.Generator().manual_seed(8))
    out = model(z, mel_for(64).float())
    torch.testing.assert_close(out.log_scale, torch.full_like(z, -4.0))


def test_batched_synthesis_equals_per_utterance():
    model = tiny_student().float()
    lengths = [64, 36, 52]
    mels = [mel_for(n, seed=10 + i).float() for i, n in enumerate(lengths)]
    batch = torch.zeros(3, 4, 16)
    for i, m in enumerate(mels):
        batch[i, :, : m.shape[-1]] = m[0]
    gens = [torch.Generator().manual_seed(20 + i) for i in range(3)]
    together = model.synthesize(batch, lengths=lengths, generator=gens)
    for i, (m, n) in enumerate(zip(mels, lengths, strict=True)):
        alone = model.synthesize(m, generator=torch.Generator().manual_seed(20 + i))
        torch.testing.assert_close(together[i, :n], alone[0], atol=1e-5, rtol=0)
        assert float(together[i, n:].abs().sum()) == 0.0


@pytest.mark.parametrize("chunk", [8, 20, 37])
def test_chunked_synthesis_equals_unchunked(chunk):
    model = tiny_student().float()
    mel = mel_for(160, batch=2).float()
    z = model.noise([160, 160], torch.Generator().manual_seed(9))
    whole = model.synthesize(mel, noise=z)
    parts = model.synthesize(mel, noise=z, chunk_samples=chunk)
    assert model.lookback < 160  # chunks really reuse earlier context
    torch.testing.assert_close(parts, whole, atol=1e-5, rtol=0)


def test_bad_mel_shape_is_a_clear_error():
    model = Student(**TINY)
    with pytest.raises(ValueError, match="mel must be"):
        model.synthesize(torch.zeros(1, 5, 10))


def test_fast_inference_path_equals_the_training_path():
    model = tiny_student().float()
    mel = mel_for(200, batch=2).float()
    z = model.noise([200, 200], torch.Generator().manual_seed(11))
    slow = model(z, mel).x
    fast = model.transform_inference(z, model.features(mel))
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    # also with wide dilations (the shifted views reach far back) on the default layout
    big = Student(n_mels=4, flow_layers=[10], upsample_scales=[2, 2])
    big = randomize(big, seed=3, std=0.05)
    z = big.noise([1200], torch.Generator().manual_seed(12))
    mel = mel_for(1200).float()
    slow = big(z, mel).x.detach()
    assert float((slow - z).abs().mean()) > 0.01  # the flow does something
    torch.testing.assert_close(big.transform_inference(z, big.features(mel)), slow)


@pytest.mark.parametrize("rows", [7, 1 << 18])
def test_time_major_rows_per_pass_do_not_change_the_sample(rows, monkeypatch):
    # a CPU works through few rows at a time (cache), a GPU through many (launches)
    model = tiny_student().float()
    mel = mel_for(200, batch=2).float()
    z = model.noise([200, 200], torch.Generator().manual_seed(13))
    want = model(z, mel).x
    monkeypatch.setattr(student_module, "TIME_MAJOR_ROWS", rows)
    torch.testing.assert_close(model.transform_inference(z, model.features(mel)), want)


def test_bf16_autocast_keeps_the_composition_in_float32():
    model = tiny_student().float()
    mel = mel_for(200, batch=2).float()
    z = model.noise([200, 200], torch.Generator().manual_seed(14))
    want = model.transform_inference(z, model.features(mel))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model.transform_inference(z, model.features(mel))
    assert low.dtype == torch.float32
    snr = 10 * torch.log10(want.pow(2).sum() / (want - low).pow(2).sum())
    assert 20 < float(snr) < 200  # bf16 arithmetic ran (not float32) and stayed close


@pytest.mark.parametrize("chunk", [None, 6])
def test_lengths_off_the_hop_still_give_whole_frames(chunk):
    model = tiny_student().float()
    mel = mel_for(16, batch=2).float()  # 4 frames of hop 4
    gens = lambda: [torch.Generator().manual_seed(30 + i) for i in range(2)]  # noqa: E731
    audio = model.synthesize(mel, lengths=[14, 10], generator=gens(), chunk_samples=chunk)
    assert audio.shape == (2, 16)
    assert float(audio[0, 14:].abs().sum()) == float(audio[1, 10:].abs().sum()) == 0.0
    whole = model.synthesize(mel, lengths=[14, 10], generator=gens())
    torch.testing.assert_close(audio, whole, atol=1e-5, rtol=0)  # chunked == unchunked
    # each utterance still draws exactly its length from its generator
    z = model.noise([14, 10], gens())
    expected = model.synthesize(mel, lengths=[14, 10], noise=torch.nn.functional.pad(z, (0, 2)))
    torch.testing.assert_close(audio, expected, atol=1e-5, rtol=0)


def test_batched_fast_path_equals_per_utterance_and_the_training_path():
    model = tiny_student().float()
    mel = mel_for(120, batch=3).float()
    z = model.noise([120, 120, 120], torch.Generator().manual_seed(13))
    cond = model.features(mel)
    together = model.transform_inference(z, cond)
    for b in range(3):
        alone = model.transform_inference(z[b : b + 1], cond[b : b + 1])
        torch.testing.assert_close(together[b : b + 1], alone, atol=1e-6, rtol=0)
    torch.testing.assert_close(together, model.transform(z, cond).x, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("steps", [40, 700])  # shorter and longer than the flow's reach
def test_time_major_flow_parameters_equal_the_convolution_layout_for_a_batch(steps):
    flow = randomize(IAFFlow(cond_channels=4, layers=10, residual_channels=6, gate_channels=8))
    flow = flow.double()
    g = torch.Generator().manual_seed(14)
    z = torch.randn(3, steps, generator=g, dtype=torch.float64)
    cond = torch.randn(3, 4, steps, generator=g, dtype=torch.float64)
    rows = cond.permute(2, 0, 1).reshape(-1, 4)  # (T * B, C): row t * B + b
    mu, log_s = flow.params_time_major(z.t().contiguous(), rows)
    ref_mu, ref_log_s = flow.params(z, cond)
    torch.testing.assert_close(mu.t(), ref_mu, atol=1e-12, rtol=0)
    torch.testing.assert_close(log_s.t(), ref_log_s, atol=1e-12, rtol=0)
