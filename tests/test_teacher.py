"""WaveNet teacher: causality, cached generation == teacher forcing, batching, densities."""

from __future__ import annotations

import itertools

import pytest
import torch

from pwavenet.models import teacher
from pwavenet.models.conv import CausalConv1d, dilations, receptive_field
from pwavenet.models.teacher import WaveNet

HOP = 16


def tiny(output: str = "mol", **kw) -> WaveNet:
    torch.manual_seed(0)
    args = dict(
        n_mels=8,
        layers=6,
        cycles=2,
        kernel_size=3,
        residual_channels=16,
        gate_channels=32,
        skip_channels=16,
        output=output,
        mixtures=3,
        upsample_scales=[4, 4],
    )
    args.update(kw)
    return WaveNet(**args).eval()


def inputs(batch=2, frames=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    mel = torch.randn(batch, 8, frames, generator=g)
    audio = (torch.rand(batch, 1, frames * HOP, generator=g) * 2 - 1) * 0.5
    return audio, mel


def test_dilations_and_receptive_field():
    assert dilations(6, 2) == [1, 2, 4, 1, 2, 4]
    assert receptive_field(24, 4, 3) == 1 + 2 * 4 * (1 + 2 + 4 + 8 + 16 + 32)
    assert receptive_field(30, 3, 3) == 1 + 2 * 3 * 1023
    assert tiny().receptive_field == receptive_field(6, 2, 3)
    with pytest.raises(ValueError):
        dilations(10, 3)


@pytest.mark.parametrize("kernel_size, dilation", [(1, 1), (2, 3), (3, 4)])
def test_causal_conv_step_equals_forward(kernel_size, dilation):
    torch.manual_seed(0)
    conv = CausalConv1d(3, 5, kernel_size, dilation=dilation)
    x = torch.randn(2, 3, 40)
    full = conv(x)
    queue = conv.new_queue(2, x)
    steps = torch.stack([conv.step(x[:, :, t], queue) for t in range(40)], dim=-1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("output", ["mol", "gaussian"])
def test_causality(output):
    model = tiny(output)
    audio, mel = inputs()
    with torch.no_grad():
        base = model(audio, mel)
        for t in (0, 17, 100, audio.shape[-1] - 1):
            changed = audio.clone()
            changed[..., t:] = -changed[..., t:] + 0.3
            out = model(changed, mel)
            # distributions up to and including t never see x_t or later ...
            torch.testing.assert_close(out[..., : t + 1], base[..., : t + 1], atol=0, rtol=0)
            # ... and the very next step does see x_t.
            if t + 1 < audio.shape[-1]:
                assert not torch.allclose(out[..., t + 1], base[..., t + 1])


def test_mel_conditions_the_whole_output():
    model = tiny()
    audio, mel = inputs()
    with torch.no_grad():
        a = model(audio, mel)
        b = model(audio, mel + 1.0)
    assert (a - b).abs().amax(dim=1).min() > 0  # every step depends on the mel


@pytest.mark.parametrize("output", ["mol", "gaussian"])
def test_cached_generation_reproduces_teacher_forcing(output):
    model = tiny(output)
    audio, mel = inputs()
    with torch.no_grad():
        forced_params = model(audio, mel)
    _, params = model.generate(mel, forced=audio[:, 0], return_params=True)
    assert params.shape == forced_params.shape
    torch.testing.assert_close(params, forced_params, atol=1e-4, rtol=0)


def test_cached_generation_samples_like_the_naive_generator():
    model = tiny()
    _, mel = inputs(batch=1, frames=4)
    fast, _ = model.generate(mel, generator=torch.Generator().manual_seed(3))
    slow = model.generate_naive(mel, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(fast, slow, atol=1e-4, rtol=0)


@pytest.mark.parametrize("output", ["mol", "gaussian"])
def test_torch_step_loop_equals_numpy_step_loop(output, monkeypatch):
    # On the CPU the step loop runs on numpy arrays; elsewhere (CUDA) the same code runs on
    # tensors. Force the tensor path on the CPU: same samples, same parameters.
    model = tiny(output)
    audio, mel = inputs(batch=2, frames=10)  # 160 steps: more than one conditioning chunk
    seeds = [torch.Generator().manual_seed(s) for s in (7, 7)]
    fast, fast_params = model.generate(mel, generator=seeds[0], return_params=True)
    monkeypatch.setattr(teacher, "step_array_like", lambda t: t.new_empty(0))
    slow, slow_params = model.generate(mel, generator=seeds[1], return_params=True)
    torch.testing.assert_close(slow, fast, atol=1e-5, rtol=0)
    torch.testing.assert_close(slow_params, fast_params, atol=1e-5, rtol=0)
    with torch.no_grad():
        forced_params = model(audio, mel)
    _, params = model.generate(mel, forced=audio[:, 0], return_params=True)
    torch.testing.assert_close(params, forced_params, atol=1e-4, rtol=0)


def test_cached_generation_with_speakers_reproduces_teacher_forcing():
    model = tiny(speakers=3, speaker_channels=4)
    audio, mel = inputs()
    speaker = torch.tensor([2, 0])
    with torch.no_grad():
        forced_params = model(audio, mel, speaker)
    _, params = model.generate(mel, speaker=speaker, forced=audio[:, 0], return_params=True)
    torch.testing.assert_close(params, forced_params, atol=1e-4, rtol=0)


def test_progress_may_stop_generation_early():
    model = tiny()
    _, mel = inputs(batch=1, frames=2)

    def first(n):
        return lambda steps: itertools.islice(steps, n)

    full, _ = model.generate(mel, generator=torch.Generator().manual_seed(1))
    part, _ = model.generate(mel, generator=torch.Generator().manual_seed(1), progress=first(9))
    assert torch.equal(part[:, :9], full[:, :9]) and torch.all(part[:, 9:] == 0)
    naive = model.generate_naive(mel, generator=torch.Generator().manual_seed(1), progress=first(9))
    torch.testing.assert_close(naive[:, :9], full[:, :9], atol=1e-4, rtol=0)
    assert torch.all(naive[:, 9:] == 0)


def test_batched_generation_equals_per_utterance():
    model = tiny()
    _, mel = inputs(batch=2, frames=6)
    mel[1, :, 4:] = -11.5  # utterance 1 is 4 frames long; the rest is padding
    lengths = [6 * HOP, 4 * HOP]
    seeds = [11, 12]
    batched, _ = model.generate(
        mel, lengths=lengths, generator=[torch.Generator().manual_seed(s) for s in seeds]
    )
    for b in range(2):
        frames = lengths[b] // HOP
        alone, _ = model.generate(
            mel[b : b + 1, :, :frames], generator=torch.Generator().manual_seed(seeds[b])
        )
        torch.testing.assert_close(batched[b, : lengths[b]], alone[0], atol=1e-4, rtol=0)
        assert torch.all(batched[b, lengths[b] :] == 0)


@pytest.mark.parametrize("output", ["mol", "gaussian"])
def test_log_prob_is_a_normalised_per_sample_density(output):
    model = tiny(output)
    audio, mel = inputs(batch=1, frames=2)
    lp = model.log_prob(audio, mel)
    assert lp.shape == (1, 2 * HOP) and torch.isfinite(lp).all() and (lp <= 1e-6).all()
    # Gradients reach every parameter and stay finite.
    (-lp.mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_speaker_conditioning():
    model = tiny(speakers=3, speaker_channels=4)
    audio, mel = inputs()
    with torch.no_grad():
        a = model(audio, mel, torch.tensor([0, 0]))
        b = model(audio, mel, torch.tensor([1, 0]))
    assert not torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1])
    with pytest.raises(ValueError, match="speaker"):
        model(audio, mel)


def test_shape_errors():
    model = tiny()
    audio, mel = inputs()
    with pytest.raises(ValueError, match=r"mel must be \(B, 8, frames\)"):
        model(audio, mel[:, :5])
    with pytest.raises(ValueError, match="samples but mel covers"):
        model(audio[..., :-3], mel)
