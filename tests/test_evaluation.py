"""Evaluation metrics on constructed cases with known answers, and the Griffin-Lim baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from training_setup import tiny_batch, tiny_models

from pwavenet.audio import LogMelSpectrogram
from pwavenet.config import AudioConfig
from pwavenet.eval.griffin_lim import griffin_lim
from pwavenet.eval.metrics import (
    compare,
    log_spectral_distance,
    loudness_ratio_db,
    mel_cepstral_distortion,
    mrstft_distance,
)
from pwavenet.eval.pitch import f0_track, pitch_metrics
from pwavenet.eval.report import summarize
from pwavenet.eval.scores import student_kl_nats, synthesis_speed, teacher_nll_bits

SR = 16000
AUDIO = AudioConfig(sample_rate=SR, fmax=8000.0)


def tone(freq: float, seconds: float = 1.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    # a few harmonics: voice-like, and YIN must not lock onto an octave
    return amp * sum(np.sin(2 * np.pi * k * freq * t) / k for k in (1, 2, 3)).astype(np.float32)


def noise(seconds: float = 1.0, amp: float = 0.1, seed: int = 0) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal(int(SR * seconds))).astype(np.float32)


def test_identical_signals_give_zero_distances():
    y = tone(150) + noise(amp=0.01)
    assert mrstft_distance(y, y) == 0.0
    assert mel_cepstral_distortion(y, y, AUDIO) == 0.0
    assert log_spectral_distance(y, y) == 0.0
    assert loudness_ratio_db(y, y) == 0.0
    metrics = compare(y, y, AUDIO)
    assert metrics["f0_rmse_hz"] == 0.0 and metrics["vuv_error"] == 0.0
    assert metrics["voiced_recall"] == 1.0


@pytest.mark.parametrize("gain", [0.5, 0.1, 2.0])
def test_a_known_gain_gives_the_known_loudness_ratio(gain):
    y = tone(200) + noise(amp=0.02)
    assert loudness_ratio_db(gain * y, y) == pytest.approx(20 * math.log10(gain), abs=1e-4)
    # A pure gain shifts every log power by the same amount: LSD = |20 log10 g| exactly.
    assert log_spectral_distance(gain * y, y) == pytest.approx(abs(20 * math.log10(gain)), 1e-3)


@pytest.mark.parametrize("freq", [110.0, 200.0, 330.0])
def test_a_pure_tone_gives_its_f0(freq):
    f0 = f0_track(tone(freq), SR, 256)
    voiced = f0[f0 > 0]
    assert len(voiced) > 0.9 * len(f0)
    assert np.median(voiced) == pytest.approx(freq, rel=0.01)
    assert np.abs(voiced - freq).max() < 0.03 * freq


def test_noise_and_silence_are_unvoiced_and_recall_counts_reference_frames():
    assert (f0_track(noise(), SR, 256) > 0).mean() < 0.1
    assert (f0_track(np.zeros(SR, np.float32), SR, 256) == 0).all()
    half = np.concatenate([tone(200, 0.5), noise(0.5, amp=0.1)])
    m = pitch_metrics(f0_track(half, SR, 256), f0_track(tone(200), SR, 256))
    assert 0.4 < m["voiced_recall"] < 0.6 and 0.4 < m["vuv_error"] < 0.6
    assert m["f0_rmse_hz"] < 3.0


def test_mcd_grows_with_spectral_difference():
    y = tone(200) + noise(amp=0.01)
    near = mel_cepstral_distortion(y + noise(amp=0.005, seed=1), y, AUDIO)
    far = mel_cepstral_distortion(noise(amp=0.3, seed=2), y, AUDIO)
    assert 0 < near < far


def test_griffin_lim_inverts_a_mel_to_audio_with_its_pitch_and_level():
    y = tone(180, 1.0)
    mel = LogMelSpectrogram.from_config(AUDIO)(torch.from_numpy(y))
    out = griffin_lim(mel, AUDIO, iterations=32)
    assert out.shape == (mel.shape[-1] * AUDIO.hop_length,)
    assert torch.isfinite(out).all()
    assert abs(loudness_ratio_db(out, y)) < 2.0
    m = pitch_metrics(f0_track(out.numpy(), SR, 256), f0_track(y, SR, 256))
    assert m["voiced_recall"] > 0.9 and m["f0_rmse_hz"] < 5.0
    # More iterations fit the magnitude better.
    few = griffin_lim(mel, AUDIO, iterations=2)
    assert mrstft_distance(out, y) < mrstft_distance(few, y)


def test_f0_tracker_follows_the_synthetic_corpus_ground_truth(tmp_path):
    import json

    import soundfile as sf

    from pwavenet.data.make_corpus import make_corpus

    root = make_corpus(tmp_path / "c", num_utterances=2, seed=3, sample_rate=SR)
    truth = json.loads((root / "ground_truth.json").read_text())["utterances"]
    for uid, entry in truth.items():
        ref, _ = sf.read(str(root / "wavs" / f"{uid}.wav"), dtype="float32")
        hop = round(entry["hop_seconds"] * SR)
        est = f0_track(ref, SR, hop)
        gt = np.asarray(entry["f0"])[: len(est)]
        m = pitch_metrics(est[: len(gt)], gt)
        assert m["voiced_recall"] > 0.7 and m["f0_rmse_hz"] < 15.0, (uid, m)


def _write(path, x, rate=SR):
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, rate, subtype="PCM_16")
    return path


def test_evaluate_command_writes_metrics_for_every_system(tmp_path, capsys):
    import json

    from pwavenet import cli

    refs = [_write(tmp_path / "ref" / f"u{i}.wav", tone(150 + 50 * i)) for i in range(2)]
    for i, r in enumerate(refs):
        _write(tmp_path / "same" / r.name, tone(150 + 50 * i))
        _write(tmp_path / "quiet" / r.name, 0.1 * tone(150 + 50 * i))
    cache = tmp_path / "dump"
    cache.mkdir()
    (cache / "model.json").write_text(
        json.dumps({"format": "pwavenet-export/1", "audio": AUDIO.__dict__})
    )
    args = [
        "evaluate",
        str(tmp_path / "ref"),
        "--features",
        str(cache),
        "--out",
        str(tmp_path / "o"),
    ]
    args += ["--system", f"same={tmp_path / 'same'}", "--system", f"quiet={tmp_path / 'quiet'}"]
    assert cli.main(args) == 0
    data = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert set(data["mean"]) == {"same", "quiet", "griffin-lim"}
    assert data["mean"]["quiet"]["loudness_db"] == pytest.approx(-20.0, abs=0.05)
    assert abs(data["mean"]["same"]["loudness_db"]) < 0.01  # 16-bit rounding only
    assert data["mean"]["same"]["voiced_recall"] == 1.0
    assert all(math.isfinite(v) for v in data["mean"]["griffin-lim"].values())
    assert (tmp_path / "o" / "griffin-lim" / "u0.wav").is_file()
    assert "| quiet |" in (tmp_path / "o" / "metrics.md").read_text()
    assert "| same |" in capsys.readouterr().out
    # Every utterance's metrics, each mean's interval, every pair's paired test.
    assert set(data["utterances"]) == {"u0", "u1"}
    assert set(data["utterances"]["u1"]) == {"same", "quiet", "griffin-lim"}
    ci = data["ci95"]["quiet"]["loudness_db"]
    assert ci["n"] == 2 and ci["low"] <= data["mean"]["quiet"]["loudness_db"] <= ci["high"]
    assert data["ci95"]["same"]["voiced_recall"] == {"low": 1.0, "high": 1.0, "n": 2}  # constant
    loudness = {(t["a"], t["b"]): t for t in data["pairs"]["loudness_db"]}
    assert set(loudness) == {("same", "quiet"), ("same", "griffin-lim"), ("quiet", "griffin-lim")}
    assert loudness[("same", "quiet")]["mean_diff"] < 0  # |same| - |quiet|: same is nearer 0 dB
    assert data["stats"]["directions"]["loudness_db"] == "zero"
    assert any("Only 2 utterances" in n for n in data["notes"])
    # The standard measures of pwavenet[eval] (installed by CI through dev), on by default.
    assert data["mean"]["same"]["pesq_wb"] > 4.5 and data["mean"]["same"]["stoi"] > 0.99
    assert data["mean"]["same"]["mcd_world_db"] < data["mean"]["quiet"]["mcd_world_db"] + 1e-9
    assert any(n.startswith("standard measures computed with pesq") for n in data["notes"])
    assert 0 <= data["reference"]["tracker_agreement"]["vuv_agreement"] <= 1
    assert {t["a"] for t in data["pairs"]["pesq_wb"]} >= {"same"}
    report = (tmp_path / "o" / "report.html").read_text()
    assert "PESQ (wb)" in report and "pitch trackers (YIN and WORLD) agree" in report
    assert "Paired differences" in report and "Metrics per utterance" in report
    from pwavenet.eval.report import check_report

    assert check_report(tmp_path / "o") == []  # booleans and pitch nulls are fine


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda d: None, "missing bad output"),
        (lambda d: _write(d / "bad" / "u0.wav", tone(150), 22050), "sample rate 22050 Hz"),
        (lambda d: _write(d / "bad" / "u0.wav", tone(150, 0.5)), "more than one hop apart"),
    ],
)
def test_evaluate_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, make, pattern):
    import json
    import re

    from pwavenet import cli

    _write(tmp_path / "ref" / "u0.wav", tone(150))
    (tmp_path / "bad").mkdir()
    make(tmp_path)
    feats = tmp_path / "f"
    feats.mkdir()
    (feats / "model.json").write_text(
        json.dumps({"format": "pwavenet-export/1", "audio": AUDIO.__dict__})
    )
    args = ["evaluate", str(tmp_path / "ref"), "--features", str(feats)]
    rc = cli.main([*args, "--out", str(tmp_path / "o"), "--system", f"bad={tmp_path / 'bad'}"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and re.search(pattern, err), err
    assert not (tmp_path / "o").exists()


def test_mcd_ignores_the_references_pauses():
    speech = tone(150, 0.5) + noise(0.5, amp=0.01)
    ref = np.concatenate([speech, np.zeros(SR // 2, np.float32)])
    out = np.concatenate([speech, tone(400, 0.5)])  # something loud where the reference pauses
    gated = mel_cepstral_distortion(out, ref, AUDIO)
    everything = mel_cepstral_distortion(out, ref, AUDIO, gate_db=200.0)
    assert gated < everything / 3  # only the frames that straddle the pause's edge count


def test_synthesis_speed_aggregates_the_batches(tmp_path):
    import json

    rows = [
        {"id": "a", "samples": 1000, "seconds": 0.0625, "samples_per_s": 2000.0, "rtf": 8.0},
        {"id": "b", "samples": 3000, "seconds": 0.1875, "samples_per_s": 1000.0, "rtf": 16.0},
    ]
    record = {"format": "pwavenet-synthesis/1", "model": "teacher", "device": "cpu"}
    (tmp_path / "synthesis.json").write_text(
        json.dumps({**record, "batch_size": 1, "utterances": rows})
    )
    speed = synthesis_speed(tmp_path)
    assert speed["samples_per_s"] == pytest.approx(4000 / 3.5)  # 0.5 s + 3 s of compute
    assert speed["rtf"] == pytest.approx(3.5 / 0.25)
    assert synthesis_speed(tmp_path / "none") is None


def _result(student: dict, teacher: dict, gl: dict) -> dict:
    base = {"voiced_recall": 0.0, "f0_rmse_hz": math.nan, "loudness_db": 0.0, "mrstft": 1.0}
    return {
        "mean": {
            "student": {**base, **student},
            "teacher": {**base, **teacher},
            "griffin-lim": {**base, **gl},
        },
        "reference": {"voiced_fraction": 0.5},
        "models": {"teacher_nll_bits": {"mean": 17.5}},
        "speed": {},
    }


def test_the_summary_says_what_the_numbers_say():
    lines = summarize(
        _result(
            {"loudness_db": -6.0, "mrstft": 2.0},
            {"voiced_recall": 0.9, "f0_rmse_hz": 4.0, "loudness_db": 1.5, "mrstft": 3.0},
            {"voiced_recall": 0.5, "f0_rmse_hz": 8.0, "mrstft": 2.5},
        )
    )
    text = "\n".join(lines)
    assert "student (2.00), then griffin-lim (2.50), then teacher (3.00)" in text
    assert "student beats the no-training Griffin-Lim baseline (2.50)" in text
    assert "student's MR-STFT distance (2.00) is at most the teacher's (3.00)" in text
    assert "student: 6.0 dB quieter than the reference (tolerance 2 dB): it whispers." in text
    assert "teacher: +1.5 dB against the reference's loudness, within 2 dB." in text
    assert "teacher: voiced in 90% of the frames where the reference is voiced" in text
    assert "pitch is present" in text and "F0 is off by 4.0 Hz RMS" in text
    assert "griffin-lim: voiced in 50%" in text and "partly voiced" in text
    assert "student: voiced in 0%" in text and "essentially unvoiced" in text
    assert "1.50 bits above that of uniform 16-bit noise" in text
    flipped = "\n".join(summarize(_result({"mrstft": 4.0}, {"mrstft": 3.0}, {"mrstft": 1.0})))
    assert "No trained system beats" in flipped and "(4.00) is above the teacher's" in flipped


def test_references_at_another_rate_are_resampled(tmp_path):
    import soundfile as sf

    from pwavenet.eval.evaluate import evaluate_systems

    (tmp_path / "ref").mkdir()
    (tmp_path / "sys").mkdir()
    sf.write(str(tmp_path / "ref" / "u.wav"), np.repeat(tone(200), 2), 2 * SR, subtype="PCM_16")
    sf.write(str(tmp_path / "sys" / "u.wav"), tone(200), SR, subtype="PCM_16")
    out = evaluate_systems(
        [tmp_path / "ref" / "u.wav"], {"s": tmp_path / "sys"}, AUDIO, tmp_path / "o"
    )
    assert out["mean"]["s"]["voiced_recall"] > 0.9
    assert abs(out["mean"]["s"]["loudness_db"]) < 0.5


def test_model_scores_are_pinned():
    """Teacher NLL and student KL of a tiny seeded pair, measured before evaluation called the
    training functions: the numbers must not move."""
    teacher, student, _ = tiny_models()
    wav = tiny_batch(3, batch=1, steps=256)["audio"][0, 0].numpy()
    assert teacher_nll_bits(teacher, wav) == pytest.approx(16.98312717280235, rel=1e-6)
    assert student_kl_nats(student, teacher, wav) == pytest.approx(0.14877089858055115, rel=1e-6)
    kl = student_kl_nats(student, teacher, wav, samples=6, seed=2)  # draws in groups of 4 and 2
    assert kl == pytest.approx(0.1382555067539215, rel=1e-6)
    teacher, student, _ = tiny_models(output="gaussian", base="gaussian")
    assert student_kl_nats(student, teacher, wav) == pytest.approx(0.01676211506128311, rel=1e-6)


def test_a_copy_of_a_system_never_differs_and_further_measures_join_every_table(tmp_path):
    from pwavenet.eval.evaluate import evaluate_systems, load_metrics

    refs = []
    for i in range(4):
        x = tone(140 + 30 * i, 0.3) + noise(0.3, amp=0.01, seed=i)
        refs.append(_write(tmp_path / "ref" / f"u{i}.wav", x))
        _write(tmp_path / "a" / f"u{i}.wav", x + noise(0.3, amp=0.02, seed=10 + i))
        _write(tmp_path / "b" / f"u{i}.wav", 0.5 * x)

    def peak_ratio(output, reference, audio):  # a further per-utterance measure
        return {"peak_ratio": float(np.abs(output).max() / np.abs(reference).max())}

    systems = {"a": tmp_path / "a", "a-again": tmp_path / "a", "b": tmp_path / "b"}
    result = evaluate_systems(
        refs,
        systems,
        AUDIO,
        tmp_path / "o",
        with_griffin_lim=False,
        measures=(compare, peak_ratio),
        notes=["a note from the measures"],
        resamples=500,
    )
    for key, pairs in result["pairs"].items():
        (same,) = [t for t in pairs if {t["a"], t["b"]} == {"a", "a-again"}]
        assert not same["significant"] and same["p"] == 1.0 and same["mean_diff"] == 0.0, key
    assert result["mean"]["b"]["peak_ratio"] == pytest.approx(0.5, abs=1e-3)
    assert "peak_ratio" in result["ci95"]["a"] and "peak_ratio" not in result["pairs"]
    assert result["notes"][0] == "a note from the measures"
    again = load_metrics(tmp_path / "o" / "metrics.json")
    assert again["pairs"]["mrstft"][0]["p_holm"] == result["pairs"]["mrstft"][0]["p_holm"]
    assert "peak_ratio" in (tmp_path / "o" / "metrics.md").read_text()


def test_mel_references_are_refused_in_one_line(tmp_path, capsys):
    import json

    from pwavenet import cli

    _write(tmp_path / "ref" / "u0.wav", tone(150))
    np.save(tmp_path / "ref" / "u1.npy", np.zeros((80, 10), np.float32))
    _write(tmp_path / "sys" / "u0.wav", tone(150))
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "model.json").write_text(
        json.dumps({"format": "pwavenet-export/1", "audio": AUDIO.__dict__})
    )
    args = ["evaluate", str(tmp_path / "ref"), "--features", str(tmp_path / "f")]
    rc = cli.main([*args, "--out", str(tmp_path / "o"), "--system", f"s={tmp_path / 'sys'}"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert "u1.npy: a mel, not audio" in err and "pwavenet synthesize" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["evaluate", "eval-teacher"])
@pytest.mark.parametrize("device", ["nosuchdevice", "cuda:99"])
def test_an_unavailable_device_is_a_one_line_error(tmp_path, capsys, command, device):
    from pwavenet import cli

    if command == "evaluate":
        args = [
            "evaluate",
            str(tmp_path),
            "--system",
            f"s={tmp_path}",
            "--out",
            str(tmp_path / "o"),
        ]
        args += ["--teacher", str(tmp_path / "none")]
    else:
        args = ["eval-teacher", str(tmp_path / "none"), str(tmp_path / "dump")]
    assert cli.main([*args, "--device", device]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--device {device}: not available" in err
    assert not (tmp_path / "o").exists()


def test_model_scores_come_with_bootstrap_intervals(tmp_path):
    from pwavenet.eval.evaluate import evaluate_systems

    teacher, student, _ = tiny_models()
    refs = []
    for i in range(3):
        refs.append(_write(tmp_path / "ref" / f"u{i}.wav", tone(150 + 40 * i, 0.1)))
        _write(tmp_path / "s" / f"u{i}.wav", tone(150 + 40 * i, 0.1))
    result = evaluate_systems(
        refs,
        {"s": tmp_path / "s"},
        AUDIO,
        tmp_path / "o",
        with_griffin_lim=False,
        teacher=teacher,
        student=student,
        kl_samples=2,
        resamples=200,
    )
    for key in ("teacher_nll_bits", "student_kl_nats"):
        scores, ci = result["models"][key], result["models_ci95"][key]
        values = [scores[f"u{i}"] for i in range(3)]
        assert set(scores) == {"mean", "u0", "u1", "u2"}  # every reference and the mean
        assert scores["mean"] == pytest.approx(np.mean(values))
        assert min(values) <= ci["low"] <= ci["high"] <= max(values) and ci["n"] == 3
    assert result["pairs"] == {}  # one system: nothing to compare
