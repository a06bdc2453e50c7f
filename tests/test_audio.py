"""Audio reading/writing and the log-mel extractor."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import tone, write_audio

from pwavenet.audio import LogMelSpectrogram, read_audio, write_wav
from pwavenet.config import AudioConfig
from pwavenet.errors import AudioError


def librosa_log_mel(audio: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """Reference: librosa on the same padded signal, framed without centring."""
    import librosa

    pad = (cfg.n_fft - cfg.hop_length) // 2
    padded = np.pad(audio, (pad, pad), mode="reflect")
    mel = librosa.feature.melspectrogram(
        y=padded,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window="hann",
        center=False,
        power=1.0,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
    )
    return np.log(np.maximum(mel, cfg.log_floor))


@pytest.mark.parametrize(
    "cfg",
    [
        AudioConfig(),
        AudioConfig(
            sample_rate=16000,
            n_fft=512,
            hop_length=128,
            win_length=400,
            n_mels=64,
            fmin=50.0,
            fmax=None,
        ),
    ],
    ids=["default-22k", "16k-short-window"],
)
def test_log_mel_matches_librosa(cfg):
    audio = tone(1.0, cfg.sample_rate)
    audio[: cfg.sample_rate // 10] = 0.0  # include a silent stretch to exercise the floor
    ours = LogMelSpectrogram.from_config(cfg)(torch.from_numpy(audio)).numpy()
    ref = librosa_log_mel(audio, cfg)
    assert ours.shape == ref.shape == (cfg.n_mels, len(audio) // cfg.hop_length)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("length", [256, 1000, 4096, 7680, 7681])
def test_frame_count_is_length_over_hop(length):
    mel = LogMelSpectrogram()(torch.randn(length) * 0.1)
    assert mel.shape == (80, length // 256)


def test_batched_equals_unbatched():
    fn = LogMelSpectrogram()
    x = torch.randn(3, 2, 5120) * 0.1
    batched = fn(x)
    assert batched.shape == (3, 2, 80, 20)
    for i in range(3):
        for j in range(2):
            torch.testing.assert_close(batched[i, j], fn(x[i, j]), atol=1e-5, rtol=0)


def test_frames_centre_on_their_hop_block():
    # A click at sample n must light up frame n // hop the most.
    fn = LogMelSpectrogram()
    for n in (3000, 3100, 3327, 3328, 5000):
        x = torch.zeros(8192)
        x[n] = 1.0
        assert int(fn(x).sum(0).argmax()) == n // 256


def test_silence_is_the_floor():
    fn = LogMelSpectrogram()
    mel = fn(torch.zeros(2048))
    assert torch.allclose(mel, torch.full_like(mel, fn.silence_value()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_cuda_agree():
    x = torch.randn(2, 22050) * 0.1
    fn = LogMelSpectrogram()
    torch.testing.assert_close(fn.cuda()(x.cuda()).cpu(), fn.cpu()(x), atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- reading


def test_read_converts_stereo_rate_and_formats(tmp_path):
    mono = tone(0.5, 16000)
    stereo = np.stack([mono, 0.5 * mono], axis=1)
    path = write_audio(tmp_path / "s.wav", stereo, 16000, "PCM_24")
    audio, rate = read_audio(path)
    assert rate == 16000 and audio.ndim == 1
    np.testing.assert_allclose(audio, 0.75 * mono, atol=1e-4)
    audio, rate = read_audio(path, 22050)
    assert rate == 22050 and abs(len(audio) - int(0.5 * 22050)) <= 1
    # The 220 Hz fundamental survives resampling.
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 22050 / len(audio) - 220) < 5


def test_read_float_wav_above_full_scale_is_scaled(tmp_path):
    path = write_audio(tmp_path / "f.wav", tone(0.2, 8000) * 4, 8000, "FLOAT")
    audio, _ = read_audio(path)
    assert np.abs(audio).max() == pytest.approx(0.999, abs=1e-3)


@pytest.mark.parametrize(
    "make, cause",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(b"this is not audio at all" * 40), "not a readable audio file"),
        (lambda p: p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt "), "not a readable audio file"),
        (
            lambda p: write_audio(p, np.array([0.1, np.nan, 0.2] * 100, np.float32), 8000, "FLOAT"),
            "non-finite",
        ),
        (lambda p: None, "no such file"),
    ],
    ids=["empty", "garbage", "truncated-header", "nan", "missing"],
)
def test_read_errors_name_file_and_cause(tmp_path, make, cause):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError) as err:
        read_audio(path)
    assert str(path) in str(err.value) and cause in str(err.value)
    assert "\n" not in str(err.value)


def test_write_wav_is_16_bit_and_atomic(tmp_path):
    audio = tone(0.3, 22050)
    path = write_wav(tmp_path / "o.wav", torch.from_numpy(audio), 22050)
    info = sf.info(str(path))
    assert (info.subtype, info.samplerate, info.channels) == ("PCM_16", 22050, 1)
    back, _ = read_audio(path)
    np.testing.assert_allclose(back, audio, atol=1.0 / 32767)
    with pytest.raises(AudioError, match="non-finite"):
        write_wav(tmp_path / "nan.wav", np.array([0.0, np.inf]), 22050)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.wav"]


@pytest.mark.parametrize(
    "rate, n_fft, n_mels, fmin, fmax",
    [(22050, 1024, 80, 0.0, 8000.0), (16000, 1024, 80, 0.0, None), (24000, 2048, 100, 55.0, 1.2e4)],
)
def test_mel_filterbank_equals_librosa(rate, n_fft, n_mels, fmin, fmax):
    import librosa

    from pwavenet.audio import mel_filterbank

    ours = mel_filterbank(rate, n_fft, n_mels, fmin, fmax).numpy()
    ref = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax or rate / 2)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-7)
