"""The standard measures (pwavenet.eval.standard): PESQ and STOI at their maxima for identical
signals, lower for degraded ones; WORLD's MCD zero for identical signals and growing with
noise; a clean tone periodic under both trackers; the mel-cepstrum against its definition; and
the skip-with-a-note path of a missing package."""

from __future__ import annotations

import importlib
import itertools
import math
import sys

import numpy as np
import pytest

from pwavenet.data.speech import synthesize_utterance
from pwavenet.eval import standard
from pwavenet.eval.pitch import f0_track, yin_periodicity

RATE = 22050
WORLD_KEYS = ("mcd_world_db", "periodicity_error_world", "vuv_f1_world")


def _tone(rate: int = RATE, f0: float = 220.0, shift: float = 0.0, amp: float = 0.3):
    """One second of a clean harmonic tone (1/k amplitudes up to 5 kHz), delayed by ``shift``
    seconds."""
    t = np.arange(rate) / rate + shift
    return amp * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, int(5000 / f0) + 1))


def _noisy(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """``x`` plus white noise ``snr_db`` below its power."""
    noise = np.random.default_rng(seed).standard_normal(len(x))
    return x + noise * np.sqrt(np.mean(x**2) / np.mean(noise**2)) * 10 ** (-snr_db / 20)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return synthesize_utterance(0, sample_rate=RATE, min_seconds=1.5, max_seconds=2.0).audio


@pytest.fixture(scope="module")
def speech_analysis(speech: np.ndarray) -> standard.Analysis:
    pytest.importorskip("pyworld")
    return standard.analyse(speech, RATE)


def test_identical_signals_score_the_maxima(speech, speech_analysis):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    notes: list[str] = []
    m = standard.standard_measures(speech_analysis, speech, RATE, notes=notes)
    assert set(m) == set(standard.available_measures()) and not notes
    assert m["pesq_wb"] > 4.5  # the wide-band maximum is 4.64
    assert m["stoi"] > 0.99
    assert m["mcd_world_db"] == 0.0
    assert m["periodicity_error_world"] == 0.0 and m["periodicity_error_yin"] == 0.0
    assert m["vuv_f1_world"] == 1.0 and m["vuv_f1_yin"] == 1.0


def test_degraded_signals_score_lower(speech, speech_analysis):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    levels = [standard.standard_measures(speech_analysis, speech, RATE)]
    for snr in (30.0, 10.0):
        levels.append(standard.standard_measures(speech_analysis, _noisy(speech, snr), RATE))
    for key in ("pesq_wb", "stoi"):
        assert all(a[key] > b[key] for a, b in itertools.pairwise(levels)), key
    for key in ("mcd_world_db", "periodicity_error_world", "periodicity_error_yin"):
        assert all(a[key] < b[key] for a, b in itertools.pairwise(levels)), key
    # a level change moves only c0, which MCD leaves out
    assert standard.standard_measures(speech_analysis, 0.5 * speech, RATE)["mcd_world_db"] < 1e-3


@pytest.mark.parametrize("rate", [16000, 22050])
def test_clean_tone_is_periodic_under_both_trackers(rate):
    pytest.importorskip("pyworld")
    tone = standard.analyse(_tone(rate), rate)
    inner = slice(8, -8)  # away from the ends, where the frames reach past the tone
    for f0, periodicity in (
        (tone.f0_yin, tone.periodicity_yin),
        (tone.f0_world, tone.periodicity_world),
    ):
        assert np.all(periodicity[inner] > 0.95)  # periodicity error from a perfect one near 0
        assert np.all(np.abs(f0[inner] / 220.0 - 1.0) < 0.01)
    # against a delayed, quieter copy of itself: periodicity error near 0, voicing the same
    copy = standard.standard_measures(tone, _tone(rate, shift=0.001, amp=0.15), rate)
    assert copy["periodicity_error_world"] < 0.02 and copy["periodicity_error_yin"] < 0.02
    assert copy["vuv_f1_world"] > 0.99 and copy["vuv_f1_yin"] > 0.99
    noise = np.random.default_rng(0).standard_normal(rate) * 0.1
    versus_noise = standard.standard_measures(tone, noise, rate)
    assert versus_noise["periodicity_error_world"] > 0.5
    assert versus_noise["periodicity_error_yin"] > 0.5


def test_trackers_agree_on_a_clean_tone(speech_analysis):
    agreement = standard.reference_agreement(_tone(), RATE)
    assert agreement["vuv_agreement"] > 0.95 and agreement["gross_error_rate"] == 0.0
    assert agreement["fine_error_cents"] < 10.0
    on_speech = standard.reference_agreement(speech_analysis, RATE)
    assert set(on_speech) == set(agreement)
    assert all(0.0 <= on_speech[k] <= 1.0 for k in on_speech if k != "fine_error_cents")


def test_yin_voices_exactly_the_frames_it_finds_periodic(speech):
    x = np.concatenate([speech, 0.05 * np.random.default_rng(1).standard_normal(4000)])
    for hop in (110, 256):
        f0 = f0_track(x, RATE, hop)
        periodicity = yin_periodicity(x, RATE, hop)
        assert periodicity.shape == f0.shape
        assert np.all((0.0 <= periodicity) & (periodicity <= 1.0))
        assert np.array_equal(f0 > 0, periodicity > 0.85)


def test_mel_cepstrum_is_the_cosine_series_on_the_warped_axis():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 0.3, 12) / np.arange(1, 13)  # log|H(w)| = sum_n a_n cos(n w)
    bins = 1025
    w = np.linspace(0.0, np.pi, bins)
    log_mag = np.cos(np.outer(w, np.arange(12))) @ a
    envelope = np.exp(2.0 * log_mag)[None]  # a power envelope
    assert np.allclose(standard.mel_cepstrum(envelope, 11, 0.0)[0], a, atol=1e-9)
    alpha, order = 0.455, 24
    mc = standard.mel_cepstrum(envelope, order, alpha)[0]
    # the definition: log|H| read on the warped axis w~ is sum_m mc_m cos(m w~)
    w_tilde = np.linspace(0.0, np.pi, 20001)
    w_back = standard._warp(w_tilde, -alpha)  # the inverse warping
    on_warped = np.cos(np.outer(w_back, np.arange(12))) @ a
    weights = np.full(len(w_tilde), 1.0 / (len(w_tilde) - 1))
    weights[[0, -1]] /= 2  # the trapezoid rule over [0, pi], as a mean
    expected = 2.0 * (np.cos(np.outer(np.arange(order + 1), w_tilde)) * on_warped) @ weights
    expected[0] /= 2.0
    assert np.allclose(mc, expected, atol=1e-6)


def test_mel_cepstrum_alpha_is_the_literatures():
    assert standard.mel_cepstrum_alpha(16000) == pytest.approx(0.42, abs=0.011)  # SPTK at 16 kHz
    assert standard.mel_cepstrum_alpha(48000) == pytest.approx(0.55, abs=0.011)  # ESPnet, 48 kHz
    alphas = [standard.mel_cepstrum_alpha(r) for r in (8000, 16000, 22050, 24000, 44100)]
    assert alphas == sorted(alphas)


def test_pesq_and_stoi_failures_are_nan_with_a_note(speech_analysis, speech):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    cases = {
        "reference is digital silence": (np.zeros(RATE), np.zeros(RATE)),
        "output is digital silence": (speech, np.zeros(len(speech))),
        "1/4 of a second": (speech[: RATE // 5], speech[: RATE // 5]),
    }
    for cause, (ref, out) in cases.items():
        notes: list[str] = []
        m = standard.standard_measures(ref, out, RATE, notes=notes)
        assert math.isnan(m["pesq_wb"]), cause
        assert any(n.startswith("PESQ: NaN") and cause in n for n in notes), notes
    notes = []
    m = standard.standard_measures(np.zeros(RATE), np.zeros(RATE), RATE, notes=notes)
    assert math.isnan(m["stoi"]) and any(n.startswith("STOI: NaN") for n in notes)


def test_a_missing_package_is_skipped_with_a_note(monkeypatch, speech):
    monkeypatch.setitem(sys.modules, "pesq", None)  # makes `import pesq` fail
    monkeypatch.setitem(sys.modules, "pyworld", None)
    notes = standard.missing_notes()
    assert "PESQ skipped: package `pesq` not installed (pip install pwavenet[eval])" in notes
    assert any(n.startswith("WORLD measures") and "`pyworld`" in n for n in notes)
    keys = standard.available_measures()
    assert "pesq_wb" not in keys and not set(WORLD_KEYS) & set(keys)
    m = standard.standard_measures(speech, speech, RATE)
    assert set(m) == set(keys)
    assert m["vuv_f1_yin"] == 1.0
    assert standard.reference_agreement(speech, RATE) == {}


def test_a_package_that_fails_to_import_is_named_with_its_cause(monkeypatch):
    real = importlib.import_module

    def failing(name, *args):
        if name == "pyworld":  # as pyworld 0.3.5 fails where setuptools no longer has it
            raise ModuleNotFoundError("No module named 'pkg_resources'", name="pkg_resources")
        return real(name, *args)

    monkeypatch.setattr(standard.importlib, "import_module", failing)
    (note,) = [n for n in standard.missing_notes() if "pyworld" in n]
    assert "cannot be imported" in note and "pkg_resources" in note


def test_analyses_must_match():
    pytest.importorskip("pyworld")
    tone = _tone()
    with pytest.raises(ValueError, match="expected 16000 Hz"):
        standard.standard_measures(standard.analyse(tone, RATE), tone, 16000)
    harvest = standard.analyse(tone, RATE, world_tracker="harvest")
    with pytest.raises(ValueError, match="harvest"):
        standard.standard_measures(harvest, tone, RATE)
    with pytest.raises(ValueError, match="world_tracker"):
        standard.analyse(tone, RATE, world_tracker="crepe")


def test_package_versions_name_the_distribution():
    versions = standard.package_versions()
    assert set(versions) == {"pesq", "pystoi", "pyworld"}
    assert all(v is None or isinstance(v, str) for v in versions.values())


def test_measure_plugs_into_the_metrics_and_analyses_each_reference_once(speech, monkeypatch):
    pytest.importorskip("pyworld")
    from pwavenet.config import AudioConfig
    from pwavenet.eval.metrics import measure

    audio = AudioConfig(sample_rate=RATE)
    noisy = _noisy(speech, 20.0).astype(np.float32)  # as metrics.measure passes it
    direct = standard.standard_measures(speech, noisy, RATE)
    assert measure(noisy, speech, audio, (standard.measure,)) == direct
    monkeypatch.setattr(standard, "_last_reference", {})
    calls = []
    real = standard.analyse
    monkeypatch.setattr(standard, "analyse", lambda *a, **k: calls.append(1) or real(*a, **k))
    for reference, output, same in (
        (speech, speech, True),
        (noisy, speech, False),
        (noisy, noisy, True),
    ):
        mcd = standard.measure(output, reference, audio)["mcd_world_db"]
        assert (mcd == 0.0) == same  # the kept analysis is always the reference's own
    assert len(calls) == 5  # three outputs, and each of two references once
    assert set(standard.COLUMNS) == set(standard.DIRECTIONS) >= set(standard.available_measures())
