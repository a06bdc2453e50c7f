"""The synthetic corpus: determinism, layout, and speech-likeness measured on the signal."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pwavenet.data.make_corpus import (
    F0_HOP_SECONDS,
    GROUND_TRUTH,
    METADATA,
    CorpusError,
    make_corpus,
    synthesize_utterance,
)

FAST = {"sample_rate": 16000, "min_seconds": 1.0, "max_seconds": 1.5}


# --------------------------------------------------------------------------- signal measurements


def frame_at(audio: np.ndarray, centre: int, length: int) -> np.ndarray:
    """``length`` samples centred on ``centre``, zero-padded at the edges."""
    start = centre - length // 2
    padded = np.pad(audio, length)
    return padded[start + length : start + 2 * length]


def yin_period(audio: np.ndarray, centre: int, rate: int, fmin=60.0, fmax=450.0) -> float:
    """YIN (de Cheveigne & Kawahara 2002) period estimate in samples at ``centre``."""
    window, max_lag = round(0.025 * rate), int(np.ceil(rate / fmin))
    x = frame_at(audio.astype(np.float64), centre, window + max_lag)
    shifted = np.lib.stride_tricks.sliding_window_view(x, window)[: max_lag + 1]
    d = np.sum((shifted - x[:window]) ** 2, axis=1)
    cmnd = d[1:] * np.arange(1, max_lag + 1) / np.maximum(np.cumsum(d[1:]), 1e-12)
    min_lag = int(rate / fmax)
    below = np.flatnonzero(cmnd[min_lag - 1 :] < 0.15)
    if len(below) == 0:
        return float(min_lag + np.argmin(cmnd[min_lag - 1 :]))
    start = end = min_lag - 1 + below[0]
    while end + 1 < len(cmnd) and cmnd[end + 1] < 0.15:  # the whole dip, not its first ripple
        end += 1
    return float(start + np.argmin(cmnd[start : end + 1]) + 1)


def frame_stats(audio: np.ndarray, rate: int, frames: int):
    """Energy (dB), zero-crossing rate and spectral centroid (Hz) of 25 ms frames every 10 ms."""
    length = round(0.025 * rate)
    x = np.stack([frame_at(audio, round(k * F0_HOP_SECONDS * rate), length) for k in range(frames)])
    energy = 10 * np.log10(np.mean(x.astype(np.float64) ** 2, axis=1) + 1e-20)
    zcr = np.mean(np.abs(np.diff(np.sign(x), axis=1)) > 0, axis=1)
    power = np.abs(np.fft.rfft(x * np.hanning(length), axis=1)) ** 2
    freqs = np.fft.rfftfreq(length, 1 / rate)
    centroid = power @ freqs / np.maximum(power.sum(axis=1), 1e-20)
    return energy, zcr, centroid


def interior(mask: np.ndarray, reach: int = 2) -> np.ndarray:
    """Frames whose neighbours within ``reach`` frames are all in ``mask``."""
    padded = np.pad(mask, reach)
    return np.all([padded[k : k + len(mask)] for k in range(2 * reach + 1)], axis=0)


def pitch_agreement(utt, rate: int) -> tuple[float, int]:
    """Share of interior voiced frames whose YIN F0 is within 5 % of the ground truth."""
    frames = np.flatnonzero(interior(utt.f0 > 0))[::2]
    ok = [
        abs(rate / yin_period(utt.audio, round(k * F0_HOP_SECONDS * rate), rate) / utt.f0[k] - 1)
        < 0.05
        for k in frames
    ]
    return float(np.mean(ok)), len(frames)


@pytest.fixture(scope="module")
def utterances():
    return [synthesize_utterance(i, seed=11) for i in range(5)]


# --------------------------------------------------------------------------- speech-likeness


def test_pitch_measured_on_the_signal_matches_the_ground_truth(utterances):
    shares = [pitch_agreement(u, 22050) for u in utterances]
    for (share, count), u in zip(shares, utterances, strict=True):
        assert count >= 10, u.id
        assert share >= 0.75, (u.id, share)
    assert np.mean([s for s, _ in shares]) >= 0.9


def test_unvoiced_frames_are_noisier_than_voiced_frames(utterances):
    voiced_zcr, unvoiced_zcr, voiced_centroid, unvoiced_centroid = [], [], [], []
    for u in utterances:
        energy, zcr, centroid = frame_stats(u.audio, 22050, len(u.f0))
        loud = energy > energy.max() - 30
        voiced, unvoiced = interior(u.f0 > 0), interior(u.f0 == 0) & loud
        assert unvoiced.sum() >= 3, u.id  # every utterance has some frication
        voiced_zcr += list(zcr[voiced])
        unvoiced_zcr += list(zcr[unvoiced])
        voiced_centroid += list(centroid[voiced])
        unvoiced_centroid += list(centroid[unvoiced])
    assert np.median(unvoiced_zcr) > 2 * np.median(voiced_zcr)
    assert np.median(unvoiced_centroid) > 2 * np.median(voiced_centroid)


def test_there_are_pauses_and_they_are_not_digital_silence(utterances):
    for u in utterances:
        energy, _, _ = frame_stats(u.audio, 22050, len(u.f0))
        quiet = energy <= energy.max() - 30
        assert quiet.sum() >= 5, u.id  # at least 50 ms of pause
        assert (energy[quiet] > energy.max() - 90).all()  # a noise floor, never zeros
        assert np.count_nonzero(u.audio == 0) < 0.01 * len(u.audio)


def test_f0_contours_are_plausible_and_move(utterances):
    for u in utterances:
        voiced = u.f0[u.f0 > 0]
        assert 0.2 < len(voiced) / len(u.f0) < 0.9, u.id
        assert voiced.min() >= 70 and voiced.max() <= 400, u.id
        assert voiced.max() / voiced.min() > 1.1, u.id
        both = (u.f0[1:] > 0) & (u.f0[:-1] > 0)
        steps = np.abs(np.diff(np.log(np.maximum(u.f0, 1))))[both]
        assert steps.max() < 0.05  # smooth within voiced runs: < 5 % per 10 ms
    means = [np.median(u.f0[u.f0 > 0]) for u in utterances]
    assert max(means) / min(means) > 1.2  # different speakers


def test_audio_is_finite_normalised_and_within_duration(utterances):
    peaks = []
    for u in utterances:
        seconds = len(u.audio) / 22050
        assert u.audio.dtype == np.float32 and np.isfinite(u.audio).all()
        assert 1.0 <= seconds <= 4.0
        assert len(u.f0) == int(np.floor(seconds / F0_HOP_SECONDS - 1e-9)) + 1
        peaks.append(float(np.max(np.abs(u.audio))))
    assert all(0.3 <= p <= 1.0 for p in peaks)
    assert max(peaks) - min(peaks) > 0.05  # peaks vary per utterance


@pytest.mark.parametrize("rate", [8000, 16000])
def test_low_sample_rates_work_and_stay_band_limited(rate):
    for index in range(2):
        u = synthesize_utterance(index, seed=5, sample_rate=rate)
        assert np.isfinite(u.audio).all() and 0.3 <= np.max(np.abs(u.audio)) <= 1.0
        share, _ = pitch_agreement(u, rate)
        assert share >= 0.75, (u.id, share)
        # voiced frames hold (almost) no energy in the top 6 % of the band: the source is
        # band-limited and no resonance sits near Nyquist
        length = round(0.025 * rate)
        frames = np.flatnonzero(interior(u.f0 > 0))
        x = np.stack([frame_at(u.audio, round(k * F0_HOP_SECONDS * rate), length) for k in frames])
        power = np.abs(np.fft.rfft(x * np.hanning(length), axis=1)) ** 2
        top = np.fft.rfftfreq(length, 1 / rate) > 0.47 * rate
        assert power[:, top].sum() < 1e-5 * power.sum(), rate


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_utterance_and_different_seed_different():
    a, b = synthesize_utterance(2, seed=3, **FAST), synthesize_utterance(2, seed=3, **FAST)
    c = synthesize_utterance(2, seed=4, **FAST)
    assert np.array_equal(a.audio, b.audio) and np.array_equal(a.f0, b.f0) and a.text == b.text
    assert a.audio.shape != c.audio.shape or not np.allclose(a.audio, c.audio)


def read_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_corpus_files_are_byte_identical_and_prefix_stable(tmp_path):
    first = read_bytes(make_corpus(tmp_path / "a", num_utterances=3, seed=9, **FAST))
    again = read_bytes(make_corpus(tmp_path / "b", num_utterances=3, seed=9, **FAST))
    more = read_bytes(make_corpus(tmp_path / "c", num_utterances=5, seed=9, **FAST))
    other = read_bytes(make_corpus(tmp_path / "d", num_utterances=3, seed=10, **FAST))
    assert first == again
    wavs = [k for k in first if k.startswith("wavs")]
    assert len(wavs) == 3 and all(more[k] == first[k] for k in wavs)
    assert more[METADATA].decode().splitlines()[:3] == first[METADATA].decode().splitlines()
    assert all(other[k] != first[k] for k in wavs)
    truth_3, truth_5 = json.loads(first[GROUND_TRUTH]), json.loads(more[GROUND_TRUTH])
    assert all(truth_5["utterances"][k] == v for k, v in truth_3["utterances"].items())


# --------------------------------------------------------------------------- layout


def test_layout_is_ljspeech_with_ground_truth(tmp_path):
    out = make_corpus(tmp_path / "corpus", num_utterances=4, seed=1, **FAST)
    rows = [line.split("|") for line in (out / METADATA).read_text("utf-8").splitlines()]
    assert len(rows) == 4 and all(len(r) == 3 and all(f.strip() for f in r) for r in rows)
    ids = [r[0] for r in rows]
    assert sorted(p.stem for p in (out / "wavs").iterdir()) == sorted(ids)
    truth = json.loads((out / GROUND_TRUTH).read_text("utf-8"))
    assert truth["generator"]["seed"] == 1 and truth["generator"]["complete"] is True
    assert sorted(truth["utterances"]) == sorted(ids)
    for uid in ids:
        info = sf.info(str(out / "wavs" / f"{uid}.wav"))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 1.0 <= info.duration <= 1.5
        audio, _ = sf.read(str(out / "wavs" / f"{uid}.wav"))
        assert np.isfinite(audio).all() and 0.3 <= np.max(np.abs(audio)) <= 1.0
        f0 = truth["utterances"][uid]["f0"]
        assert truth["utterances"][uid]["hop_seconds"] == F0_HOP_SECONDS
        assert len(f0) == int(np.floor(info.duration / F0_HOP_SECONDS - 1e-9)) + 1
        assert all(v == round(v, 1) for v in f0) and any(v > 0 for v in f0)


def test_rewriting_a_corpus_replaces_it_and_drops_stale_files(tmp_path):
    out = make_corpus(tmp_path / "corpus", num_utterances=3, seed=1, **FAST)
    (out / "notes.txt").write_text("kept")
    make_corpus(out, num_utterances=2, seed=2, **FAST)
    assert len((out / METADATA).read_text("utf-8").splitlines()) == 2
    assert len(list((out / "wavs").iterdir())) == 2
    assert (out / "notes.txt").read_text() == "kept"


def test_unrelated_folders_are_refused_and_left_alone(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    with pytest.raises(CorpusError, match="not empty"):
        make_corpus(mine, num_utterances=1, **FAST)
    lj = tmp_path / "LJSpeech"
    (lj / "wavs").mkdir(parents=True)
    (lj / METADATA).write_text("LJ001-0001|hello|hello\n")
    with pytest.raises(CorpusError, match=str(lj)):
        make_corpus(lj, num_utterances=1, **FAST)
    assert (lj / METADATA).read_text() == "LJ001-0001|hello|hello\n"
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    with pytest.raises(CorpusError, match="not a folder"):
        make_corpus(mine / "notes.txt", num_utterances=1, **FAST)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_utterances": 0},
        {"sample_rate": 4000},
        {"min_seconds": 0.0},
        {"min_seconds": 3.0, "max_seconds": 2.0},
        {"seed": -1},
        {"engine": "festival"},
    ],
)
def test_bad_arguments_are_refused_before_writing(tmp_path, kwargs):
    with pytest.raises(CorpusError):
        make_corpus(tmp_path / "corpus", **kwargs)
    assert not (tmp_path / "corpus").exists()


# --------------------------------------------------------------------------- espeak-ng


def test_espeak_engine_without_espeak_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(CorpusError, match="espeak-ng"):
        make_corpus(tmp_path / "corpus", num_utterances=2, engine="espeak")
    assert not (tmp_path / "corpus").exists()


def test_espeak_engine_with_the_installed_espeak(tmp_path):
    if shutil.which("espeak-ng") is None:
        with pytest.raises(CorpusError, match="espeak-ng"):
            make_corpus(tmp_path / "corpus", num_utterances=2, engine="espeak")
        return
    out = make_corpus(tmp_path / "corpus", num_utterances=2, engine="espeak", **FAST)
    assert len(list((out / "wavs").glob("*.wav"))) == 2


FAKE_ESPEAK = """#!{python}
import sys
import numpy as np
import soundfile as sf
args = sys.argv[1:]
words = len(args[-1].split())
rate = 22050
tone = 0.3 * np.sin(2 * np.pi * 150 * np.arange(int(0.4 * words * rate)) / rate)
silence = np.zeros(int(0.3 * rate))
sf.write(args[args.index("-w") + 1], np.concatenate([silence, tone, silence]), rate)
"""


def test_espeak_engine_pipeline_with_a_stand_in_program(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "espeak-ng"
    fake.write_text(FAKE_ESPEAK.format(python=sys.executable))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    out = make_corpus(tmp_path / "corpus", num_utterances=2, engine="espeak", **FAST)
    rows = [line.split("|") for line in (out / METADATA).read_text("utf-8").splitlines()]
    assert len(rows) == 2 and all(r[1].endswith(".") for r in rows)
    for uid, _, _ in rows:
        audio, rate = sf.read(str(out / "wavs" / f"{uid}.wav"))
        assert rate == 16000 and 1.0 <= len(audio) / rate <= 1.5
        assert np.sqrt(np.mean(audio[: int(0.06 * rate)] ** 2)) > 0.01  # leading silence cut
    assert json.loads((out / GROUND_TRUTH).read_text("utf-8"))["utterances"] == {}


# --------------------------------------------------------------------------- tools/make_corpus.py


def load_tool():
    path = Path(__file__).resolve().parents[1] / "tools" / "make_corpus.py"
    spec = importlib.util.spec_from_file_location("make_corpus_tool", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_writes_a_corpus_and_reports_errors_in_one_line(tmp_path, capsys):
    tool = load_tool()
    argv = ["--utterances", "2", "--seed", "1", "--sample-rate", "8000", "--max-seconds", "1.5"]
    assert tool.main([str(tmp_path / "corpus"), *argv]) == 0
    assert capsys.readouterr().out.startswith("make-corpus: wrote 2 utterances")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    assert tool.main([str(tmp_path / "other"), *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("pwavenet: error: ") and "\n" not in err


# --------------------------------------------------------------------------- speakers


def test_multi_speaker_corpus_names_speakers_and_shares_their_voices(tmp_path):
    out = make_corpus(tmp_path / "corpus", num_utterances=6, seed=2, speakers=2, **FAST)
    rows = [line.split("|") for line in (out / METADATA).read_text("utf-8").splitlines()]
    assert [r[3] for r in rows] == ["spk01", "spk02"] * 3
    truth = json.loads((out / GROUND_TRUTH).read_text("utf-8"))
    assert truth["generator"]["speakers"] == 2
    pitch = []
    for uid, *_ in rows:
        f0 = np.array(truth["utterances"][uid]["f0"])
        pitch.append(np.log(np.median(f0[f0 > 0])))
    within = max(np.ptp(pitch[0::2]), np.ptp(pitch[1::2]))
    between = abs(np.mean(pitch[0::2]) - np.mean(pitch[1::2]))
    assert between > 2 * within  # one voice per speaker, two different voices
    single = make_corpus(tmp_path / "single", num_utterances=2, seed=2, **FAST)
    assert all(len(line.split("|")) == 3 for line in (single / METADATA).read_text().splitlines())
    assert "speakers" not in json.loads((single / GROUND_TRUTH).read_text())["generator"]


@pytest.mark.parametrize("speakers", [-1, 3, 1.5])
def test_bad_speaker_counts_are_refused_before_writing(tmp_path, speakers):
    with pytest.raises(CorpusError, match="speakers="):
        make_corpus(tmp_path / "corpus", num_utterances=2, speakers=speakers)
    assert not (tmp_path / "corpus").exists()


def test_tool_writes_a_multi_speaker_corpus(tmp_path, capsys):
    argv = ["--utterances", "2", "--sample-rate", "8000", "--max-seconds", "1.5", "--speakers", "2"]
    assert load_tool().main([str(tmp_path / "corpus"), *argv]) == 0
    rows = (tmp_path / "corpus" / METADATA).read_text("utf-8").splitlines()
    assert [r.split("|")[3] for r in rows] == ["spk01", "spk02"]
