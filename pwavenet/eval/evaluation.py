"""Objective comparisons of synthesized audio with its reference, and a no-training baseline.

Every metric takes the output ``x`` and the reference ``y`` (1-D float arrays or tensors at the
same sample rate, compared over their common length):

- :func:`mrstft_distance`: the multi-resolution STFT loss
  (:func:`pwavenet.train.losses.mrstft_loss`);
- :func:`mel_cepstral_distortion`: MCD in dB over cepstra of the log-mel spectrogram (c0 left out);
- :func:`log_spectral_distance`: LSD in dB over STFT power spectra;
- :func:`loudness_ratio_db`: ``20 log10(rms(x) / rms(y))`` (a whispering system is far below 0);
- :func:`f0_track` (YIN, no downloaded model) and :func:`pitch_metrics`: F0 RMSE in Hz over
  frames voiced in both, voiced/unvoiced error, and voiced-frame recall against the reference.

Model-based scores of the references: :func:`teacher_nll_bits` (the teacher's negative
log-likelihood in bits per sample) and :func:`student_kl_nats` (the Monte Carlo estimate of
KL(student || teacher) per sample given the reference's mel). :func:`synthesis_speed` reads the
``synthesis.json`` that ``pwavenet synthesize`` leaves beside its outputs.

:func:`griffin_lim` inverts a log-mel spectrogram without any training: the baseline every
report carries beside the neural systems (docs/design.md §8).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch.nn import functional as F

from ..audio import LogMelSpectrogram
from ..config import AudioConfig
from ..errors import AudioError, DataError
from ..train.losses import mrstft_loss

__all__ = [
    "METRIC_COLUMNS",
    "REPORT_FILES",
    "compare",
    "evaluate_systems",
    "f0_track",
    "griffin_lim",
    "load_metrics",
    "log_spectral_distance",
    "loudness_ratio_db",
    "mel_cepstral_distortion",
    "metrics_table",
    "mrstft_distance",
    "pitch_metrics",
    "student_kl_nats",
    "synthesis_speed",
    "teacher_nll_bits",
]

REPORT_FILES = ("metrics.json", "metrics.md", "report.html")

_EPS = 1e-10
_SILENCE_DBFS = -80.0  # frames below this mean power (dB re full scale) are never voiced
_MCD_GATE_DB = 40.0  # MCD counts the reference's frames within this many dB of its loudest


def _pair(x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Both signals as float32 tensors ``(T,)`` cut to their common length."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(-1)
    y = torch.as_tensor(np.asarray(y, dtype=np.float32)).reshape(-1)
    n = min(x.shape[0], y.shape[0])
    return x[:n], y[:n]


def mrstft_distance(x: Any, y: Any) -> float:
    """Multi-resolution STFT distance (spectral convergence + log-magnitude L1); 0 if equal."""
    x, y = _pair(x, y)
    return float(mrstft_loss(x[None], y[None]))


def loudness_ratio_db(x: Any, y: Any) -> float:
    """``20 log10(rms(x) / rms(y))`` in dB."""
    x, y = _pair(x, y)
    rms_x = float(x.pow(2).mean().sqrt())
    rms_y = float(y.pow(2).mean().sqrt())
    return 20.0 * math.log10(max(rms_x, _EPS) / max(rms_y, _EPS))


def mel_cepstral_distortion(
    x: Any, y: Any, audio: AudioConfig, coefficients: int = 13, gate_db: float = _MCD_GATE_DB
) -> float:
    """Mean over the reference's speech frames of ``(10 / ln 10) sqrt(2 sum_d (c_d(x) -
    c_d(y))^2)`` in dB, with ``c_1 .. c_D`` the orthonormal DCT-II of the natural-log mel
    magnitudes (c0, the level, is left out). Speech frames are those whose mel energy is within
    ``gate_db`` of the reference's loudest frame: in pauses the reference sits at the log floor
    and any noise would swamp the mean (the usual practice of scoring MCD on speech only)."""
    x, y = _pair(x, y)
    mel = LogMelSpectrogram.from_config(audio)
    with torch.no_grad():
        mx, my = mel(x), mel(y)  # (n_mels, frames)
    dct = _dct_matrix(audio.n_mels)[1 : coefficients + 1]
    diff = dct @ (mx - my)
    per_frame = (10.0 / math.log(10.0)) * torch.sqrt(2.0 * diff.pow(2).sum(0))
    level = 10.0 * torch.log10((2.0 * my).exp().mean(0).clamp(min=_EPS))  # dB of mel power
    speech = level >= level.max() - gate_db
    return float(per_frame[speech].mean())


def _dct_matrix(n: int) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None]
    m = torch.cos(math.pi / n * (i + 0.5) * k) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m.float()


def log_spectral_distance(x: Any, y: Any, n_fft: int = 1024, hop: int = 256) -> float:
    """Mean over frames of the RMS over frequency of ``10 log10 |X|^2 - 10 log10 |Y|^2`` (dB);
    powers are floored at 1e-10."""
    x, y = _pair(x, y)
    window = torch.hann_window(n_fft)
    px, py = (
        torch.stft(s, n_fft, hop, window=window, return_complex=True).abs().pow(2) for s in (x, y)
    )
    diff = 10.0 * (px.clamp(min=_EPS).log10() - py.clamp(min=_EPS).log10())
    return float(diff.pow(2).mean(0).sqrt().mean())


def f0_track(
    audio: Any,
    sample_rate: int,
    hop: int,
    *,
    fmin: float = 60.0,
    fmax: float = 500.0,
    threshold: float = 0.15,
    silence_db: float = -40.0,
) -> np.ndarray:
    """F0 in Hz of every hop block (frame ``j`` centred on samples ``[j hop, (j+1) hop)``, as
    the mel frames), 0 where unvoiced: YIN's cumulative mean normalised difference with an
    absolute threshold and parabolic refinement. Frames quieter than ``silence_db`` below the
    loudest frame, or than -80 dB full scale, are unvoiced. ``(T // hop,)``."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    lag_min, lag_max = int(sample_rate / fmax), math.ceil(sample_rate / fmin)
    width = lag_max  # integration window
    frames = x.shape[0] // hop
    span = width + lag_max
    centre = np.arange(frames) * hop + hop // 2
    padded = np.pad(x, (span, span))
    starts = centre - width // 2 + span
    segs = np.stack([padded[s : s + span] for s in starts]) if frames else np.zeros((0, span))
    n = 1 << math.ceil(math.log2(2 * span))
    spec_a = np.fft.rfft(segs[:, :width], n)
    spec_b = np.fft.rfft(segs, n)
    acf = np.fft.irfft(np.conj(spec_a) * spec_b, n)[:, : lag_max + 1]
    sq = np.concatenate([np.zeros((frames, 1)), np.cumsum(segs**2, axis=1)], axis=1)
    e0 = sq[:, width][:, None]
    lags = np.arange(lag_max + 1)
    e_lag = sq[:, lags + width] - sq[:, lags]
    diff = np.maximum(e0 + e_lag - 2 * acf, 0.0)
    cum = np.cumsum(diff[:, 1:], axis=1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] * lags[1:] / np.maximum(cum, _EPS)
    energy = e0[:, 0] / width
    loud = 10 * np.log10(np.maximum(energy, _EPS))
    gate = (loud > loud.max(initial=-np.inf) + silence_db) & (loud > _SILENCE_DBFS)
    f0 = np.zeros(frames)
    for j in np.nonzero(gate)[0]:
        below = np.nonzero(cmnd[j, lag_min : lag_max + 1] < threshold)[0]
        if below.size == 0:
            continue
        lag = lag_min + int(below[0])
        while lag + 1 <= lag_max and cmnd[j, lag + 1] < cmnd[j, lag]:
            lag += 1
        shift = 0.0
        if lag_min < lag < lag_max:
            a, b, c = cmnd[j, lag - 1], cmnd[j, lag], cmnd[j, lag + 1]
            denom = a - 2 * b + c
            shift = 0.5 * (a - c) / denom if denom > 0 else 0.0
        f0[j] = sample_rate / (lag + shift)
    return f0


def pitch_metrics(f0_x: np.ndarray, f0_y: np.ndarray) -> dict[str, float]:
    """``f0_rmse_hz`` over frames voiced in both (NaN if none), ``vuv_error`` (fraction of
    frames whose voicing differs) and ``voiced_recall`` (fraction of the reference's voiced
    frames voiced in ``x``; NaN if the reference has none)."""
    n = min(len(f0_x), len(f0_y))
    fx, fy = f0_x[:n], f0_y[:n]
    vx, vy = fx > 0, fy > 0
    both = vx & vy
    rmse = float(np.sqrt(np.mean((fx[both] - fy[both]) ** 2))) if both.any() else math.nan
    return {
        "f0_rmse_hz": rmse,
        "vuv_error": float(np.mean(vx != vy)) if n else math.nan,
        "voiced_recall": float(both.sum() / vy.sum()) if vy.any() else math.nan,
    }


def compare(x: Any, y: Any, audio: AudioConfig) -> dict[str, float]:
    """Every metric of ``x`` against the reference ``y``, as one flat dict."""
    x, y = _pair(x, y)
    f0_x = f0_track(x.numpy(), audio.sample_rate, audio.hop_length)
    f0_y = f0_track(y.numpy(), audio.sample_rate, audio.hop_length)
    return {
        "voiced_fraction": float(np.mean(f0_x > 0)) if len(f0_x) else math.nan,
        "mrstft": mrstft_distance(x, y),
        "mcd_db": mel_cepstral_distortion(x, y, audio),
        "lsd_db": log_spectral_distance(x, y, audio.n_fft, audio.hop_length),
        "loudness_db": loudness_ratio_db(x, y),
        **pitch_metrics(f0_x, f0_y),
    }


_PINV_CACHE: dict[bytes, torch.Tensor] = {}


def _mel_pinv(basis: torch.Tensor) -> torch.Tensor:
    """Pseudo-inverse of a mel filterbank, computed once per filterbank (an SVD that takes
    seconds on a busy CPU)."""
    key = basis.numpy().tobytes()
    if key not in _PINV_CACHE:
        _PINV_CACHE[key] = torch.linalg.pinv(basis.double()).float()
    return _PINV_CACHE[key]


def griffin_lim(
    log_mel: torch.Tensor, audio: AudioConfig, iterations: int = 32, seed: int = 0
) -> torch.Tensor:
    """Audio ``(frames * hop,)`` from a log-mel spectrogram ``(n_mels, frames)`` with no
    training: the mel filterbank's pseudo-inverse (clamped at 0) gives a magnitude, and
    ``iterations`` of Griffin-Lim find a phase, with the same framing as the mel extractor."""
    mel = LogMelSpectrogram.from_config(audio)
    magnitude = (_mel_pinv(mel.mel_basis) @ log_mel.float().exp()).clamp(min=0)
    frames, hop, n_fft = log_mel.shape[-1], audio.hop_length, audio.n_fft
    left = (n_fft - audio.win_length) // 2
    window = F.pad(mel.window, (left, n_fft - audio.win_length - left))
    g = torch.Generator().manual_seed(seed)
    phase = torch.exp(2j * math.pi * torch.rand(magnitude.shape, generator=g))
    length = frames * hop

    def synth(spec: torch.Tensor) -> torch.Tensor:
        chunks = torch.fft.irfft(spec, n=n_fft, dim=0) * window[:, None]  # (n_fft, frames)
        size = (1, (frames - 1) * hop + n_fft)
        ola = F.fold(chunks[None], size, kernel_size=(1, n_fft), stride=(1, hop))
        norm = F.fold(
            window.pow(2)[None, :, None].expand(1, -1, frames), size, (1, n_fft), stride=(1, hop)
        )
        full = (ola / norm.clamp(min=1e-8)).reshape(-1)
        return full[mel.pad : mel.pad + length]

    def analyse(signal: torch.Tensor) -> torch.Tensor:
        padded = F.pad(signal[None, None], (mel.pad, mel.pad), mode="reflect")[0, 0]
        return torch.stft(
            padded, n_fft, hop, audio.win_length, mel.window, center=False, return_complex=True
        )

    signal = synth(magnitude * phase)
    for _ in range(iterations):
        spec = analyse(signal)
        signal = synth(magnitude * torch.exp(1j * spec.angle()))
    return signal


def _reference_mel(wav: np.ndarray, audio: AudioConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``(audio (1, 1, frames * hop), mel (1, n_mels, frames))`` of a reference waveform."""
    mel = LogMelSpectrogram.from_config(audio)
    x = torch.from_numpy(np.asarray(wav, dtype=np.float32))
    with torch.no_grad():
        m = mel(x)
    return x[: m.shape[-1] * audio.hop_length][None, None], m[None]


@torch.no_grad()
def teacher_nll_bits(teacher: Any, wav: np.ndarray) -> float:
    """The teacher's negative log-likelihood of a 16-bit reference waveform ``(T,)`` given its
    own mel, in bits per sample (uniform 16-bit audio is 16)."""
    x, mel = _reference_mel(wav, teacher.audio)
    device = next(teacher.parameters()).device
    return float(-teacher.log_prob(x.to(device), mel.to(device)).mean()) / math.log(2.0)


@torch.no_grad()
def student_kl_nats(
    student: Any, teacher: Any, wav: np.ndarray, samples: int = 16, seed: int = 0
) -> float:
    """Monte Carlo ``KL(student || teacher)`` in nats per sample given the mel of a reference
    ``(T,)``: one student sample from seeded noise, the teacher run once on it, ``samples``
    draws per step scored with the teacher's continuous density (as in distillation) minus
    the student's closed-form entropy."""
    from ..train.losses import monte_carlo_kl

    _, mel = _reference_mel(wav, student.audio)
    device = next(student.parameters()).device
    mel = mel.to(device)
    length = mel.shape[-1] * student.audio.hop_length
    z = student.noise([length], torch.Generator().manual_seed(seed), device)
    out = student(z, mel)
    p = teacher.distribution(teacher(out.x[:, None], mel).float())
    q = student.distribution(out.loc.float(), out.log_scale.float())
    g = torch.Generator(device=device).manual_seed(seed + 1)
    groups = [min(4, samples - i) for i in range(0, samples, 4)]  # bounded memory
    kl = sum(n * monte_carlo_kl(p.log_density, q, n, generator=g).kl.mean() for n in groups)
    return float(kl) / samples


def synthesis_speed(folder: str | Path) -> dict[str, Any] | None:
    """Aggregate speed of a ``pwavenet synthesize`` output folder from its ``synthesis.json``:
    ``{"samples_per_s", "rtf", "seconds", "device", "batch_size", "model"}``; ``None`` when
    the folder has no such record (e.g. audio made by another tool)."""
    from ..fileio import read_json
    from ..synthesis import SYNTHESIS_FORMAT, SYNTHESIS_LOG

    path = Path(folder) / SYNTHESIS_LOG
    if not path.is_file():
        return None
    data = read_json(path, SYNTHESIS_FORMAT, DataError, "synthesis record")
    rows = data["utterances"]
    samples = sum(r["samples"] for r in rows)
    elapsed = sum(r["samples"] / r["samples_per_s"] for r in rows)
    seconds = sum(r["seconds"] for r in rows)
    return {
        "model": data["model"],
        "device": data["device"],
        "batch_size": data["batch_size"],
        "seconds": seconds,
        "samples_per_s": samples / max(elapsed, 1e-12),
        "rtf": elapsed / max(seconds, 1e-12),
    }


def evaluate_systems(
    references: list[Any],
    systems: dict[str, Any],
    audio: AudioConfig,
    out_dir: Any,
    *,
    with_griffin_lim: bool = True,
    iterations: int = 32,
    teacher: Any = None,
    student: Any = None,
    kl_samples: int = 16,
    progress: Any = None,
) -> dict[str, Any]:
    """Compare every system's ``<folder>/<id>.wav`` with each reference ``<id>.wav``.

    ``systems`` maps names to folders. With ``with_griffin_lim`` the reference's mel is also
    inverted by Griffin-Lim (written to ``out_dir/griffin-lim/``) and scored as one more system.
    With a ``teacher`` (a loaded export) every reference is scored by its NLL in bits per
    sample; with a ``student`` and a ``teacher``, by the student's KL to the teacher in nats per
    sample. ``progress`` wraps the loop over references.

    Returns and writes as ``out_dir/metrics.json``::

        {"utterances": {id: {system: metrics}}, "mean": {system: metrics},
         "reference": {"voiced_fraction"}, "models": {"teacher_nll_bits": {"mean", id: ...},
         "student_kl_nats": {...}}, "speed": {system: synthesis_speed(folder)}}

    and a Markdown table ``out_dir/metrics.md``. A missing output, a sample rate other than the
    reference's, or a length that differs by more than one hop is a one-line error naming the
    file, raised before anything is written.
    """
    from ..audio import read_audio, write_wav
    from ..fileio import atomic_path, write_json

    out_dir = Path(out_dir)
    if not references:
        raise DataError("no reference files given")
    pairs = [(Path(r), _check_outputs(Path(r), systems, audio)) for r in references]
    speed = {name: synthesis_speed(folder) for name, folder in systems.items()}
    per_utt: dict[str, dict[str, dict[str, float]]] = {}
    voiced: list[float] = []
    scores: dict[str, dict[str, float]] = {}
    if teacher is not None:
        scores["teacher_nll_bits"] = {}
        if student is not None:
            scores["student_kl_nats"] = {}
    mel = LogMelSpectrogram.from_config(audio)
    for ref_path, paths in progress(pairs) if progress else pairs:
        ref = read_audio(ref_path, audio.sample_rate)[0]  # checked: nothing is half-written
        outputs = {name: read_audio(path)[0] for name, path in paths.items()}
        if with_griffin_lim:
            with torch.no_grad():
                gl = griffin_lim(mel(torch.from_numpy(ref)), audio, iterations)
            write_wav(out_dir / "griffin-lim" / f"{ref_path.stem}.wav", gl, audio.sample_rate)
            outputs["griffin-lim"] = gl.numpy()
        per_utt[ref_path.stem] = {name: compare(x, ref, audio) for name, x in outputs.items()}
        f0_ref = f0_track(ref, audio.sample_rate, audio.hop_length)
        voiced.append(float(np.mean(f0_ref > 0)) if len(f0_ref) else math.nan)
        if teacher is not None:
            scores["teacher_nll_bits"][ref_path.stem] = teacher_nll_bits(teacher, ref)
            if student is not None:
                kl = student_kl_nats(student, teacher, ref, kl_samples)
                scores["student_kl_nats"][ref_path.stem] = kl
    names = list(next(iter(per_utt.values())))
    mean = {
        name: {k: _nanmean([u[name][k] for u in per_utt.values()]) for k in METRIC_COLUMNS}
        for name in names
    }
    models = {k: {"mean": _nanmean(list(v.values())), **v} for k, v in scores.items()}
    result = {
        "utterances": per_utt,
        "mean": mean,
        "reference": {"voiced_fraction": _nanmean(voiced)},
        "models": models,
        "speed": {k: v for k, v in speed.items() if v is not None},
    }
    write_json(out_dir / "metrics.json", _nan_to_none(result))
    with atomic_path(out_dir / "metrics.md") as tmp:
        tmp.write_text(metrics_table(mean, result["reference"]), encoding="utf-8")
    return result


def _nan_to_none(value: Any) -> Any:
    """NaN (a metric that does not apply, e.g. F0 RMSE without voiced frames) as JSON null."""
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _none_to_nan(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _none_to_nan(v) for k, v in value.items()}
    return math.nan if value is None else value


def load_metrics(path: str | Path) -> dict[str, Any]:
    """Read a ``metrics.json`` written by :func:`evaluate_systems` (nulls back to NaN)."""
    import json

    path = Path(path)
    try:
        return _none_to_nan(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable metrics ({exc})") from None


def _check_outputs(ref_path: Path, systems: dict[str, Any], audio: AudioConfig) -> dict[str, Path]:
    """Each system's output for one reference, checked for presence, rate and length. A
    reference at another rate is compared after resampling to the features' rate."""
    if not ref_path.is_file():
        raise DataError(f"{ref_path}: missing reference file")
    try:
        ref = sf.info(str(ref_path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{ref_path}: not a readable audio file ({exc})") from None
    expected = round(ref.frames * audio.sample_rate / ref.samplerate)
    found = {}
    for name, folder in systems.items():
        path = Path(folder) / f"{ref_path.stem}.wav"
        if not path.is_file():
            raise DataError(f"{path}: missing {name} output for reference {ref_path}")
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{path}: not a readable audio file ({exc})") from None
        if info.samplerate != audio.sample_rate:
            raise AudioError(
                f"{path}: sample rate {info.samplerate} Hz, the features are at "
                f"{audio.sample_rate} Hz"
            )
        if abs(info.frames - expected) >= audio.hop_length:
            raise AudioError(
                f"{path}: {info.frames} samples, the reference has {expected} "
                f"(more than one hop apart)"
            )
        found[name] = path
    return found


def _nanmean(values: list[float]) -> float:
    """Mean of the non-NaN values; NaN when there are none (e.g. no voiced frames)."""
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


METRIC_COLUMNS = {
    "voiced_fraction": "voiced frames",
    "mrstft": "MR-STFT",
    "mcd_db": "MCD (dB)",
    "lsd_db": "LSD (dB)",
    "loudness_db": "loudness (dB)",
    "f0_rmse_hz": "F0 RMSE (Hz)",
    "vuv_error": "V/UV error",
    "voiced_recall": "voiced recall",
}


def metrics_table(
    mean: dict[str, dict[str, float]], reference: dict[str, float] | None = None
) -> str:
    """A Markdown table of mean metrics, one row per system (and the reference's own voiced
    fraction first, when given)."""
    lines = [
        "| system | " + " | ".join(METRIC_COLUMNS.values()) + " |",
        "| --- |" + " ---: |" * len(METRIC_COLUMNS),
    ]
    rows = dict(mean)
    if reference is not None:
        rows = {"reference": {k: reference.get(k, math.nan) for k in METRIC_COLUMNS}, **rows}
    for name, m in rows.items():
        cells = ["n/a" if math.isnan(m[k]) else f"{m[k]:.3f}" for k in METRIC_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
