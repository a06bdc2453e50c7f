"""The fused (CUDA-graph-ready) generation step against the step loop and teacher forcing.

On the CPU the fused step runs eagerly: the same tensor operations a CUDA graph records. The
graph replay itself is checked on CUDA when there is one (and by ``tools/gpu_check.sh``)."""

from __future__ import annotations

import itertools

import pytest
import torch
from test_teacher import tiny as teacher_tiny

from pwavenet.models.fused import FusedSteps, choose_engine
from pwavenet.models.teacher import WaveNet

HOP = 16
ENGINES = ["fused"] + (["graph"] if torch.cuda.is_available() else [])
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def tiny(output: str = "mol", **kw) -> WaveNet:
    model = teacher_tiny(output, **kw)
    with torch.no_grad():  # away from the initial state, where many weights are zero or equal
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def pitched_mel(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    """Mel plus the pitch rows: ln(F0 / 100) and voicing, voiced at 130-250 Hz in frames 2+."""
    g = torch.Generator().manual_seed(seed)
    mel = torch.randn(batch, 10, frames, generator=g)
    mel[:, 8] = torch.linspace(0.3, 0.9, frames)
    mel[:, 9] = (torch.arange(frames) >= 2).float()
    return mel


def gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.mark.parametrize("output", ["mol", "gaussian"])
@pytest.mark.parametrize("engine", ENGINES)
def test_fused_step_samples_like_the_step_loop(output, engine):
    model = tiny(output)
    mel = torch.randn(2, 8, 10, generator=torch.Generator().manual_seed(1))
    want, want_params = model.generate(mel, generator=gens(3, 4), return_params=True, engine="step")
    got, params = model.to(DEVICE).generate(
        mel.to(DEVICE), generator=gens(3, 4), return_params=True, engine=engine
    )
    torch.testing.assert_close(got.cpu(), want, atol=1e-5, rtol=0)
    torch.testing.assert_close(params.cpu(), want_params, atol=1e-4, rtol=0)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("pitch_lag", [False, True])
def test_fused_step_reproduces_teacher_forcing(engine, pitch_lag):
    kw = dict(n_mels=8, pitch=True, pitch_lag=True, sample_rate=4000) if pitch_lag else {}
    model = tiny(**kw).to(DEVICE)
    frames = 12
    mel = pitched_mel(2, frames) if pitch_lag else torch.randn(2, 8, frames)
    audio = (torch.rand(2, 1, frames * HOP) * 2 - 1) * 0.5
    mel, audio = mel.to(DEVICE), audio.to(DEVICE)
    with torch.no_grad():
        forced_params = model(audio, mel)
    _, params = model.generate(mel, forced=audio[:, 0], return_params=True, engine=engine)
    torch.testing.assert_close(params, forced_params, atol=1e-4, rtol=0)


def test_pitch_lag_generation_matches_the_step_loop():
    model = tiny(pitch=True, pitch_lag=True, sample_rate=4000)
    mel = pitched_mel(2, 12, seed=2)
    want, _ = model.generate(mel, generator=gens(5, 6), engine="step")
    got, _ = model.generate(mel, generator=gens(5, 6), engine="fused")
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_conditioning_chunks_and_early_stop():
    model = tiny()
    mel = torch.randn(1, 8, 6)
    features = model.features(mel)
    steps = features.shape[-1]

    def run(chunk: int, stop: int | None = None) -> torch.Tensor:
        noise = model.output_head.noise(1, steps, torch.Generator().manual_seed(9), mel.device)
        fused = FusedSteps(model, features, noise=noise, chunk_steps=chunk)
        fused.run(None if stop is None else (lambda r: itertools.islice(r, stop)))
        return fused.audio

    whole = run(steps)
    for chunk in (1, 7, 64):  # refills between steps, at every step, and mid-utterance
        torch.testing.assert_close(run(chunk), whole, atol=1e-6, rtol=0)
    part, full = run(7, stop=20), run(7)
    assert torch.equal(part[:20], full[:20]) and torch.all(part[20:] == 0)


def test_batched_fused_generation_equals_per_utterance():
    model = tiny()
    mel = torch.randn(2, 8, 6)
    lengths = [6 * HOP, 4 * HOP]
    batched, _ = model.generate(mel, lengths=lengths, generator=gens(11, 12), engine="fused")
    for b in range(2):
        alone, _ = model.generate(
            mel[b : b + 1, :, : lengths[b] // HOP], generator=gens(11 + b)[0], engine="fused"
        )
        torch.testing.assert_close(batched[b, : lengths[b]], alone[0], atol=1e-5, rtol=0)
        assert torch.all(batched[b, lengths[b] :] == 0)


def test_engine_choice():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert choose_engine("auto", cpu) == "step" and choose_engine("auto", cuda) == "graph"
    assert choose_engine("fused", cpu) == "fused"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        choose_engine("graph", cpu)
    with pytest.raises(ValueError, match="engine must be one of"):
        choose_engine("turbo", cpu)
    with pytest.raises(ValueError, match="exactly one of noise and forced"):
        FusedSteps(tiny(), torch.zeros(1, 8, 16))


def test_warm_up_steps_leave_no_trace_after_reset():
    # A CUDA graph is captured after warm-up steps, whose effects capture() then undoes: the
    # reset must clear every piece of state a step carries forward.
    model = tiny(pitch=True, pitch_lag=True, sample_rate=4000)
    features = model.features(pitched_mel(1, 6, seed=4))
    steps = features.shape[-1]
    lags = model._lags(pitched_mel(1, 6, seed=4))

    def fused() -> FusedSteps:
        noise = model.output_head.noise(1, steps, torch.Generator().manual_seed(2), mel_device)
        return FusedSteps(model, features, noise=noise, lags=lags, keep_params=True)

    mel_device = features.device
    clean = fused()
    clean.run()
    warmed = fused()
    warmed._fill(0)
    for _ in range(3):
        warmed.step()
    warmed._reset()
    warmed.run()
    assert torch.equal(warmed.audio, clean.audio) and torch.equal(warmed.params, clean.params)


@pytest.mark.parametrize("window", [24, 100])
def test_features_read_in_windows_equal_the_whole(window, monkeypatch):
    # Generation reads the conditioning a window at a time (a long utterance's upsampler
    # arrays take gigabytes whole): any window gives the same values and the same samples.
    from pwavenet.models.conditioning import FeatureWindows

    model = tiny(pitch=True, pitch_lag=True, sample_rate=4000, excitation="sine")
    mel = pitched_mel(2, 12, seed=6)
    whole = model.features(mel)
    windows = FeatureWindows(model, mel, window=window)
    assert windows.shape == tuple(whole.shape)
    for start, end in [(0, 7), (7, 130), (130, 131), (131, 192), (5, 60)]:
        torch.testing.assert_close(windows.steps(start, end), whole[:, :, start:end])
    want, _ = model.generate(mel, generator=gens(1, 2), engine="step")
    monkeypatch.setattr(FeatureWindows.__init__, "__defaults__", (None, window))
    assert FeatureWindows(model, mel).window == window
    for engine in ("step", "fused"):
        got, _ = model.generate(mel, generator=gens(1, 2), engine=engine)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
