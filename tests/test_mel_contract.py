"""The mel contract: stated in ``synthesize --help``, other front ends' mels converted to it by
``convert-mel`` (round trips, framing, one-line refusals) and warned about when given as is."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import tone
from test_vocoder import ARGS, CFG

from pwavenet import cli
from pwavenet.audio import LogMelSpectrogram, mel_filterbank
from pwavenet.config import AudioConfig
from pwavenet.mels import mel_range_warning, mel_upper_bound
from pwavenet.models.export import save_export
from pwavenet.models.student import Student

AUDIO = AudioConfig()  # the defaults: 22.05 kHz, 80 bands, 0-8000 Hz
LN10 = math.log(10.0)


def log_mel(audio: np.ndarray, cfg: AudioConfig = AUDIO) -> np.ndarray:
    return LogMelSpectrogram.from_config(cfg)(torch.from_numpy(audio)).double().numpy()


def speech_like(cfg: AudioConfig = AUDIO) -> np.ndarray:
    """A tone, then silence: what an utterance with a pause gives (float32 (T,))."""
    rate = cfg.sample_rate
    return np.concatenate([tone(0.4, rate), np.zeros(rate // 5, np.float32)])


def band_weights(cfg: AudioConfig = AUDIO) -> np.ndarray:
    fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    return fb.double().numpy().sum(axis=1)


def convert(tmp_path, mel: np.ndarray, *options: str, name: str = "m") -> tuple[int, np.ndarray]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    np.save(src / f"{name}.npy", mel.astype(np.float32))
    rc = cli.main(
        ["convert-mel", str(src / f"{name}.npy"), "--out", str(tmp_path / "out"), *options]
    )
    out = tmp_path / "out" / f"{name}.npy"
    return rc, (np.load(out) if out.exists() else None)


# --------------------------------------------------------------------------- the contract


def test_synthesize_help_states_the_contract_at_the_config_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["synthesize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in (
        f"{AUDIO.sample_rate} Hz",
        f"n_fft {AUDIO.n_fft}",
        f"hop {AUDIO.hop_length}",
        f"Hann window of {AUDIO.win_length}",
        f"{AUDIO.n_mels} mel bands",
        f"to {AUDIO.fmax:g} Hz",
        f"silence is {math.log(AUDIO.log_floor):.2f}",
        f"T // {AUDIO.hop_length} frames",
        f"{(AUDIO.n_fft - AUDIO.hop_length) // 2} samples on each side",
        "Slaney",
        "convert-mel",
    ):
        assert phrase in text, phrase
    assert f"ln(max(mel, {AUDIO.log_floor}))".replace("e-05", "e-5") in text


def test_upper_bound_holds_for_full_scale_signals():
    rate = AUDIO.sample_rate
    t = np.arange(rate) / rate
    loudest = max(
        log_mel(np.sin(2 * np.pi * f * t).astype(np.float32)).max() for f in (60, 200, 3000)
    )
    square = np.sign(np.sin(2 * np.pi * 100 * t)).astype(np.float32)
    loudest = max(loudest, log_mel(square).max())
    assert loudest < mel_upper_bound(AUDIO) < loudest + 2


# --------------------------------------------------------------------------- convert-mel


def stats() -> tuple[np.ndarray, np.ndarray]:
    mels = np.concatenate([log_mel(speech_like()), log_mel(tone(0.3, 22050, freq=150))], axis=1)
    return mels.mean(axis=1), mels.std(axis=1)


@pytest.mark.parametrize(
    "scale, options",
    [
        ("log10", ["--from", "log10"]),
        ("log2", ["--from", "log2"]),
        ("db", ["--from", "db"]),
        ("db_power", ["--from", "db", "--power"]),
        ("power", ["--from", "natural", "--power"]),
        ("log10_normalised", ["--from", "log10", "--mean", "MEAN", "--std", "STD"]),
        ("frames_first", ["--from", "natural", "--frames-first"]),
    ],
)
def test_convert_mel_round_trips(tmp_path, scale, options):
    mel = log_mel(speech_like())
    power = 2 * mel - np.log(band_weights())[:, None]  # ln P of the flat-band relation
    mean, std = stats()
    mean10, std10 = mean / LN10, std / LN10
    np.save(tmp_path / "mean.npy", mean10)
    np.save(tmp_path / "std.npy", std10)
    source = {
        "log10": mel / LN10,
        "log2": mel / math.log(2),
        "db": 20 * mel / LN10,
        "db_power": 10 * power / LN10,
        "power": power,
        "log10_normalised": (mel / LN10 - mean10[:, None]) / std10[:, None],
        "frames_first": mel.T,
    }[scale]
    subst = {"MEAN": str(tmp_path / "mean.npy"), "STD": str(tmp_path / "std.npy")}
    rc, out = convert(tmp_path, source, *[subst.get(o, o) for o in options])
    assert rc == 0 and out.dtype == np.float32 and out.shape == mel.shape
    np.testing.assert_allclose(out, mel, atol=2e-4)
    assert out.min() >= math.log(AUDIO.log_floor) - 1e-6


def test_power_conversion_is_an_upper_bound_close_to_the_magnitude_mel(tmp_path):
    noise = (0.1 * np.random.default_rng(0).standard_normal(22050)).astype(np.float32)
    spec = LogMelSpectrogram.from_config(AUDIO)
    mag = spec.magnitude(torch.from_numpy(noise)).double()
    power = torch.log(spec.mel_basis.double() @ mag**2).numpy()
    rc, out = convert(tmp_path, power, "--from", "natural", "--power")
    true = log_mel(noise)
    assert rc == 0 and (out >= true - 1e-4).all()  # Cauchy-Schwarz
    assert 0 < (out - true).mean() < 0.3  # Rayleigh magnitudes: ln(2 / sqrt(pi)) = 0.12


def test_centred_framing_gives_pwavenets_frame_count(tmp_path):
    rate = AUDIO.sample_rate
    audio = (0.5 * np.sin(2 * np.pi * 300 * np.arange(rate) / rate)).astype(np.float32)
    spec = LogMelSpectrogram.from_config(AUDIO)
    stft = torch.stft(
        torch.from_numpy(audio),
        AUDIO.n_fft,
        AUDIO.hop_length,
        AUDIO.win_length,
        window=spec.window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    ).abs()
    centred = torch.log(torch.clamp(spec.mel_basis @ stft, min=AUDIO.log_floor)).numpy()
    assert centred.shape[1] == 1 + len(audio) // AUDIO.hop_length
    rc, out = convert(tmp_path, centred, "--from", "natural", "--centered")
    ours = log_mel(audio)
    assert rc == 0 and out.shape == ours.shape == (AUDIO.n_mels, len(audio) // AUDIO.hop_length)
    # A steady sine: half a hop apart, the frames agree in the bands it fills (the leakage far
    # from it beats with the phase).
    loud = ours.mean(axis=1) > -4
    assert loud.sum() >= 2
    np.testing.assert_allclose(out[loud, 4:-4], ours[loud, 4:-4], atol=0.05)


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("bands", "79 mel bands where the target has 80"),
        ("transposed", "looks transposed (pass --frames-first)"),
        ("fmax", "source fmax 7600 Hz differs from the target's 8000 Hz"),
        ("fmin", "source fmin 80 Hz differs from the target's 0 Hz"),
        ("rate", "source sample rate 16000 Hz differs from the target's 22050 Hz"),
        ("stats", "--mean has shape (79,), the target needs (80,)"),
        ("nonfinite", "bad.npy: mel contains non-finite values"),
        ("config", "80 mel bands where the target has 20"),
        ("overwrite", "converting would overwrite the input"),
        ("notnpy", "x.txt: not a .npy mel array"),
    ],
)
def test_convert_mel_refusals_are_one_line_and_write_nothing(tmp_path, capsys, case, pattern):
    mel = log_mel(speech_like()).astype(np.float32)
    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "a.npy", mel)
    inputs, options = [str(src / "a.npy")], []
    if case == "bands":
        np.save(src / "a.npy", mel[:79])
    elif case == "transposed":
        np.save(src / "a.npy", mel.T)
    elif case in ("fmax", "fmin"):
        options = [f"--{case}", "7600" if case == "fmax" else "80"]
    elif case == "rate":
        options = ["--sample-rate", "16000"]
    elif case == "stats":
        np.save(tmp_path / "mean.npy", np.zeros(79))
        options = ["--mean", str(tmp_path / "mean.npy")]
    elif case == "nonfinite":  # a good file first: it must not be written either
        bad = mel.copy()
        bad[3, 5] = np.nan
        np.save(src / "bad.npy", bad)
        inputs.append(str(src / "bad.npy"))
    elif case == "config":
        (tmp_path / "c.yaml").write_text("audio:\n  n_mels: 20\n")
        options = ["--config", str(tmp_path / "c.yaml")]
    elif case == "notnpy":
        (src / "x.txt").write_text("not a mel")
        inputs.append(str(src / "x.txt"))
    out = src if case == "overwrite" else tmp_path / "out"
    rc = cli.main(["convert-mel", *inputs, "--out", str(out), "--from", "natural", *options])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and pattern in err, err
    assert not (tmp_path / "out").exists()
    before = np.load(src / "a.npy")  # the input is as it was, and no temporary file is left
    assert before.shape in (mel.shape, mel.T.shape, (79, mel.shape[1]))
    assert not [p for p in src.iterdir() if p.name.startswith(".")]
    if case == "overwrite":
        np.testing.assert_array_equal(before, mel)


# --------------------------------------------------------------------------- warnings


@pytest.mark.parametrize("cfg", [AUDIO, CFG.audio], ids=["default", "tiny"])
def test_real_mels_do_not_warn(cfg):
    rate = cfg.sample_rate
    rng = np.random.default_rng(0)
    signals = {
        "tone": tone(0.5, rate),
        "speech_like": speech_like(cfg),
        "silence": np.zeros(rate // 2, np.float32),
        "noise": (0.1 * rng.standard_normal(rate // 2)).astype(np.float32),
        "full_scale_noise": np.sign(rng.standard_normal(rate // 2)).astype(np.float32),
    }
    for name, audio in signals.items():
        assert mel_range_warning(log_mel(audio, cfg), cfg, name) is None, name


@pytest.mark.parametrize(
    "kind, cause",
    [
        ("log10", "looks like a log10 mel"),
        ("db", "looks like a dB"),
        ("normalised", "looks like a normalised mel"),
        ("log10_normalised", "looks like a normalised mel"),
    ],
)
def test_mels_of_other_conventions_warn(kind, cause):
    mel = log_mel(speech_like())
    mean, std = stats()
    other = {
        "log10": mel / LN10,
        "db": 20 * mel / LN10,
        "normalised": (mel - mean[:, None]) / std[:, None],
        "log10_normalised": (mel - mean[:, None]) / std[:, None],  # the same up to the base
    }[kind]
    line = mel_range_warning(other, AUDIO, "x.npy")
    assert line is not None and line.startswith("x.npy: values in [") and cause in line
    assert "pwavenet convert-mel" in line and len(line.splitlines()) == 1


def test_synthesize_warns_once_per_suspect_mel_and_goes_on(tmp_path, capsys):
    model = Student(**ARGS["student"])
    export = save_export(
        model, tmp_path / "export", kind="student", model_args=ARGS["student"], cfg=CFG
    )
    mel = log_mel(speech_like(CFG.audio), CFG.audio).astype(np.float32)
    np.save(tmp_path / "real.npy", mel)
    np.save(tmp_path / "ten.npy", mel / np.float32(LN10))
    args = ["synthesize", str(export), str(tmp_path / "real.npy"), str(tmp_path / "ten.npy")]
    assert cli.main([*args, "--out", str(tmp_path / "wavs")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"pwavenet: warning: {tmp_path / 'ten.npy'}:"), err
    assert "log10" in err[0]
    assert (tmp_path / "wavs" / "real.wav").is_file() and (tmp_path / "wavs" / "ten.wav").is_file()
