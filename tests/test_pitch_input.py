"""Explicit pitch: the log-F0 and voicing rows of the features and the sine excitation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from training_setup import make_dump, tiny_config, tiny_models

from pwavenet.config import AudioConfig, ConfigError, feature_hash, load_config
from pwavenet.errors import DataError
from pwavenet.features import F0_REFERENCE_HZ, Features, f0_from_rows, pitch_rows
from pwavenet.models.conditioning import SineExcitation
from pwavenet.models.student import Student
from pwavenet.models.teacher import WaveNet

RATE, HOP, MELS = 8000, 16, 4


def _features(f0: list[float]) -> torch.Tensor:
    """Features ``(1, MELS + 2, frames)``: random mel rows and the pitch rows of ``f0``."""
    g = torch.Generator().manual_seed(0)
    mel = torch.randn(MELS, len(f0), generator=g)
    return torch.cat([mel, torch.from_numpy(pitch_rows(np.array(f0)))])[None]


def test_pitch_rows_interpolate_log_f0_over_unvoiced_frames():
    rows = pitch_rows(np.array([0.0, 100.0, 0.0, 400.0, 0.0]))
    np.testing.assert_allclose(rows[1], [0, 1, 0, 1, 0])
    np.testing.assert_allclose(rows[0], np.log([1, 1, 2, 4, 4]), atol=1e-6)
    back = f0_from_rows(torch.from_numpy(rows[0]), torch.from_numpy(rows[1]))
    np.testing.assert_allclose(back.numpy(), [0, 100, 0, 400, 0], rtol=1e-5)
    assert not pitch_rows(np.zeros(3)).any()  # nothing voiced: all zero


def test_features_track_the_pitch_of_a_tone():
    audio = AudioConfig(
        sample_rate=RATE, n_fft=256, hop_length=64, win_length=256, n_mels=10, fmax=None, pitch=True
    )
    t = np.arange(RATE) / RATE
    wav = torch.from_numpy((0.5 * np.sin(2 * np.pi * 150 * t)).astype(np.float32))
    feats = Features(audio)(wav)
    assert feats.shape == (audio.feature_channels, RATE // 64) == (12, 125)
    inner = slice(5, -5)
    assert (feats[11, inner] == 1).all()
    np.testing.assert_allclose(F0_REFERENCE_HZ * feats[10, inner].exp().numpy(), 150, rtol=0.01)
    plain = Features(AudioConfig(**{**audio.__dict__, "pitch": False}))(wav)
    torch.testing.assert_close(plain, feats[:10])


def test_the_sine_runs_at_f0_in_voiced_frames_and_is_silent_elsewhere():
    f0 = [0.0] * 10 + [200.0] * 100 + [0.0] * 10
    sine = SineExcitation(MELS, HOP, RATE)(_features(f0))[0, 0]
    assert sine.shape == (len(f0) * HOP,)
    assert not sine[: 10 * HOP].any() and not sine[-10 * HOP :].any()
    voiced = sine[10 * HOP : 110 * HOP].numpy()
    rises = np.sum((voiced[:-1] < 0) & (voiced[1:] >= 0))
    seconds = voiced.size / RATE
    assert abs(rises / seconds - 200) <= 1 / seconds + 1e-9  # one zero crossing up per period
    assert abs(voiced).max() == pytest.approx(1.0, abs=1e-3)


def test_a_window_of_the_sine_equals_the_same_samples_of_the_whole():
    exc = SineExcitation(MELS, HOP, RATE)
    feats = _features(list(np.linspace(90, 310, 60)))
    whole = exc(feats)
    start = 23
    window = exc(feats[:, :, start:], exc.phase_at(feats[:, :, :start]))
    torch.testing.assert_close(window, whole[:, :, start * HOP :], atol=1e-5, rtol=0)


def _teacher(pitch_lag: bool = False) -> WaveNet:
    torch.manual_seed(0)
    model = WaveNet(
        n_mels=MELS, layers=4, cycles=2, residual_channels=8, gate_channels=8, skip_channels=8,
        mixtures=2, upsample_scales=[4, 4], pitch=True, excitation="sine", sample_rate=RATE,
        pitch_lag=pitch_lag,
    )  # fmt: skip
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


def test_the_teacher_sees_the_sine_and_its_cached_sampler_reproduces_forcing():
    model = _teacher()
    feats = _features([0.0] * 4 + [180.0] * 12)
    audio = 0.1 * torch.randn(1, 1, feats.shape[-1] * HOP)
    with torch.no_grad():
        forced = model(audio, feats)
        other = feats.clone()
        other[:, MELS] += math.log(1.5)  # the same mel at 1.5 times the pitch
        assert (model(audio, other) - forced).abs().max() > 1e-3
    _, params = model.generate(feats, forced=audio[:, 0], return_params=True)
    torch.testing.assert_close(params, forced, atol=1e-4, rtol=0)


def test_the_pitch_lag_input_is_the_sample_one_period_back():
    from pwavenet.models.conditioning import lagged, pitch_lags

    feats = _features([0.0, 200.0, 400.0])
    lags = pitch_lags(feats, MELS, HOP, RATE)
    assert lags.tolist() == [[0] * HOP + [40] * HOP + [20] * HOP]
    audio = torch.arange(3.0 * HOP)[None] + 1
    out = lagged(audio, lags)[0]
    assert not out[: 2 * HOP].any()  # unvoiced, then a period that reaches before the start
    t = torch.arange(2 * HOP, 3 * HOP)
    assert out[2 * HOP :].tolist() == (t - 20 + 1).tolist()  # audio[t - 20]


@pytest.mark.parametrize("forced", [True, False])
def test_a_teacher_with_the_pitch_lag_generates_as_it_is_trained(forced):
    model = _teacher(pitch_lag=True)
    feats = _features([0.0] * 3 + [700.0] * 4 + [450.0] * 5)  # periods of 11 and 18 samples
    steps = feats.shape[-1] * HOP
    audio = 0.1 * torch.randn(1, 1, steps, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        params = model(audio, feats)
        late = audio.clone()
        late[..., 150:] += 0.5  # changing samples from 150 on leaves the params up to 150 alone
        torch.testing.assert_close(model(late, feats)[..., :151], params[..., :151])
        assert (model(late, feats)[..., 151:] - params[..., 151:]).abs().max() > 1e-4
    if forced:
        _, cached = model.generate(feats, forced=audio[:, 0], return_params=True)
        torch.testing.assert_close(cached, params, atol=1e-4, rtol=0)
    else:
        naive = model.generate_naive(feats, steps=60, generator=torch.Generator().manual_seed(3))
        fast, _ = model.generate(feats, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(fast[:, :60], naive, atol=1e-4, rtol=0)


def test_chunked_student_synthesis_with_a_sine_equals_one_pass():
    torch.manual_seed(0)
    student = Student(
        n_mels=MELS, flow_layers=[2, 2], layers_per_cycle=2, residual_channels=6, gate_channels=8,
        upsample_scales=[4, 4], pitch=True, excitation="sine", sample_rate=RATE,
    ).eval()  # fmt: skip
    with torch.no_grad():
        for p in student.parameters():
            p.normal_(0, 0.3)
    feats = _features(list(np.linspace(120, 260, 40)))
    steps = feats.shape[-1] * HOP
    noise = student.noise([steps], torch.Generator().manual_seed(1), "cpu", steps=steps)
    whole = student.synthesize(feats, noise=noise)
    chunked = student.synthesize(feats, noise=noise, chunk_samples=97)
    assert student.lookback < 97
    torch.testing.assert_close(chunked, whole, atol=1e-4, rtol=0)


def test_a_sine_needs_the_pitch_rows():
    with pytest.raises(ConfigError, match=r"audio\.pitch"):
        load_config(None, ["teacher.excitation=sine"])
    with pytest.raises(ValueError, match="pitch"):
        WaveNet(n_mels=MELS, upsample_scales=[4, 4], excitation="sine", sample_rate=RATE)
    with pytest.raises(ValueError, match="sample rate"):
        WaveNet(n_mels=MELS, upsample_scales=[4, 4], pitch=True, excitation="sine")
    with pytest.raises(ValueError, match="pitch"):
        WaveNet(n_mels=MELS, upsample_scales=[4, 4], pitch_lag=True, sample_rate=RATE)
    with pytest.raises(ConfigError, match="pitch_lag"):
        load_config(None, ["teacher.pitch_lag=true"])


def test_caches_without_pitch_keep_their_hash():
    audio = AudioConfig()
    settings = {k: v for k, v in audio.__dict__.items() if k not in ("pitch", "preemphasis")}
    import hashlib
    import json

    old = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    assert feature_hash(audio) == old
    assert feature_hash(AudioConfig(pitch=True)) != old
    assert feature_hash(AudioConfig(preemphasis=0.5)) != old


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_a_pitch_informed_teacher_and_student_train_synthesize_and_are_reported(tmp_path):
    from pwavenet.data.preprocess import preprocess_corpus
    from pwavenet.eval.scores import teacher_nll_bits
    from pwavenet.models.export import load_student, load_teacher
    from pwavenet.synthesis import load_inputs, synthesize
    from pwavenet.train.distill import train_student
    from pwavenet.train.teacher import train_teacher
    from pwavenet.train.trainer import reset_accelerate

    make_dump(tmp_path, utterances=8)
    pitch = ["audio.pitch=true", "audio.preemphasis=0.86"]
    sine = [*pitch, "teacher.excitation=sine", "student.excitation=sine"]
    cfg = tiny_config(*sine, "train.max_steps=2")
    dump = tmp_path / "pitch_dump"
    preprocess_corpus(tmp_path / "corpus", dump, cfg.audio, cfg.data)
    teacher_dir = train_teacher(cfg, dump, tmp_path / "t", cpu=True)
    reset_accelerate()
    train_student(tiny_config(*sine, f"distill.teacher={teacher_dir}", "train.max_steps=2"),
                  dump, tmp_path / "s", cpu=True)  # fmt: skip
    rows = [json.loads(line) for line in (tmp_path / "t" / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["valid/train_minutes"] > 0
    teacher, student = load_teacher(teacher_dir), load_student(tmp_path / "s" / "export")
    assert teacher.audio.pitch and student.excitation is not None
    refs = sorted((tmp_path / "corpus").rglob("*.wav"))[:1]
    inputs = load_inputs(refs, student.audio)
    assert inputs[0].mel.shape[0] == 20 + 2
    np.save(tmp_path / "mel_only.npy", inputs[0].mel[:20].numpy())
    with pytest.raises(DataError, match=r"mel must be \(22, frames\): 20 mel bands \+ log-F0"):
        load_inputs([tmp_path / "mel_only.npy"], student.audio)
    synthesize(student, inputs, tmp_path / "out")
    assert (tmp_path / "out" / f"{refs[0].stem}.wav").is_file()
    from pwavenet.audio import read_audio

    assert math.isfinite(teacher_nll_bits(teacher, read_audio(refs[0], 8000)[0]))
    from pwavenet.eval.evaluate import evaluate_systems
    from pwavenet.eval.report import write_report

    systems = {"student": tmp_path / "out"}
    result = evaluate_systems(refs, systems, student.audio, tmp_path / "eval", iterations=2)
    html = write_report(result, refs, systems, student.audio, tmp_path / "eval").read_text()
    assert "Pitch-informed" in html and html.count("log-F0 and voicing") == 1


def test_temperature_scales_the_random_part_in_voiced_frames_only():
    torch.manual_seed(0)
    model = WaveNet(
        n_mels=MELS, layers=3, cycles=1, residual_channels=8, gate_channels=8, skip_channels=8,
        output="gaussian", upsample_scales=[4, 4], pitch=True, pitch_lag=True, sample_rate=RATE,
    ).eval()  # fmt: skip
    feats = _features([0.0] * 3 + [300.0] * 3)
    profile = model.temperature_profile(feats, 0.5)[0]
    assert profile[: 3 * HOP].eq(1).all() and profile[3 * HOP :].eq(0.5).all()
    mel_only = model.temperature_profile(feats[:, :MELS], 0.5)  # no voicing row: everywhere
    assert mel_only.eq(0.5).all()
    audio, params = model.generate(
        feats, generator=torch.Generator().manual_seed(4), return_params=True, temperature=0.5
    )
    noise = model.output_head.noise(1, audio.shape[-1], torch.Generator().manual_seed(4), "cpu")
    z = (audio[0] - params[0, 0]) / params[0, 1].exp()  # the variate each sample used
    torch.testing.assert_close(z, noise[:, 0, 0] * profile, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="temperature"):
        model.synthesize(feats, temperature=0.0)


def test_student_temperature_scales_its_base_noise():
    _, student, _ = tiny_models()
    mel = torch.randn(1, 4, 20)
    noise = student.noise([80], torch.Generator().manual_seed(0), "cpu", steps=80)
    torch.testing.assert_close(
        student.synthesize(mel, noise=noise, temperature=0.3),
        student.synthesize(mel, noise=0.3 * noise),
    )
