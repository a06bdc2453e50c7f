"""The evaluation driver: score every system's outputs against the references, with the
Griffin-Lim baseline and the model scores, and write ``metrics.json`` and ``metrics.md``.

:func:`evaluate_systems` checks every input before it writes anything; :func:`load_metrics`
reads its ``metrics.json`` back and :func:`metrics_table` renders the mean metrics in Markdown.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from ..audio import LogMelSpectrogram
from ..config import AudioConfig
from ..errors import AudioError, DataError
from .griffin_lim import griffin_lim
from .metrics import compare
from .pitch import f0_track
from .scores import student_kl_nats, synthesis_speed, teacher_nll_bits

__all__ = ["METRIC_COLUMNS", "REPORT_FILES", "evaluate_systems", "load_metrics", "metrics_table"]

REPORT_FILES = ("metrics.json", "metrics.md", "report.html")


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
    from ..audio import read_audio

    out_dir = Path(out_dir)
    if not references:
        raise DataError("no reference files given")
    pairs = [(Path(r), _check_outputs(Path(r), systems, audio)) for r in references]
    speed = {name: synthesis_speed(folder) for name, folder in systems.items()}
    per_utt: dict[str, dict[str, dict[str, float]]] = {}
    voiced: list[float] = []
    scores: dict[str, dict[str, float]] = {k: {} for k in _score_names(teacher, student)}
    mel = LogMelSpectrogram.from_config(audio)
    for ref_path, paths in progress(pairs) if progress else pairs:
        ref = read_audio(ref_path, audio.sample_rate)[0]  # checked: nothing is half-written
        outputs = {name: read_audio(path)[0] for name, path in paths.items()}
        if with_griffin_lim:
            gl_path = out_dir / "griffin-lim" / f"{ref_path.stem}.wav"
            outputs["griffin-lim"] = _griffin_lim_output(ref, mel, audio, gl_path, iterations)
        per_utt[ref_path.stem] = {name: compare(x, ref, audio) for name, x in outputs.items()}
        f0_ref = f0_track(ref, audio.sample_rate, audio.hop_length)
        voiced.append(float(np.mean(f0_ref > 0)) if len(f0_ref) else math.nan)
        for name, value in _model_scores(ref, teacher, student, kl_samples).items():
            scores[name][ref_path.stem] = value
    result = _result(per_utt, voiced, scores, speed)
    _write_metrics(out_dir, result)
    return result


def _score_names(teacher: Any, student: Any) -> list[str]:
    """The model scores a run computes: the teacher's NLL with a teacher, and the student's KL
    with both."""
    if teacher is None:
        return []
    return ["teacher_nll_bits", *(["student_kl_nats"] if student is not None else [])]


def _model_scores(ref: np.ndarray, teacher: Any, student: Any, kl_samples: int) -> dict[str, float]:
    """The model scores (:func:`_score_names`) of one reference waveform ``(T,)``."""
    scores = {}
    if teacher is not None:
        scores["teacher_nll_bits"] = teacher_nll_bits(teacher, ref)
        if student is not None:
            scores["student_kl_nats"] = student_kl_nats(student, teacher, ref, kl_samples)
    return scores


def _griffin_lim_output(
    ref: np.ndarray, mel: LogMelSpectrogram, audio: AudioConfig, path: Path, iterations: int
) -> np.ndarray:
    """Griffin-Lim's inversion of the reference's mel: ``(T,)``, also written to ``path``."""
    from ..audio import write_wav

    with torch.no_grad():
        gl = griffin_lim(mel(torch.from_numpy(ref)), audio, iterations)
    write_wav(path, gl, audio.sample_rate)
    return gl.numpy()


def _result(
    per_utt: dict[str, dict[str, dict[str, float]]],
    voiced: list[float],
    scores: dict[str, dict[str, float]],
    speed: dict[str, Any],
) -> dict[str, Any]:
    """The result of :func:`evaluate_systems` from its per-utterance numbers."""
    names = list(next(iter(per_utt.values())))
    mean = {
        name: {k: _nanmean([u[name][k] for u in per_utt.values()]) for k in METRIC_COLUMNS}
        for name in names
    }
    return {
        "utterances": per_utt,
        "mean": mean,
        "reference": {"voiced_fraction": _nanmean(voiced)},
        "models": {k: {"mean": _nanmean(list(v.values())), **v} for k, v in scores.items()},
        "speed": {k: v for k, v in speed.items() if v is not None},
    }


def _write_metrics(out_dir: Path, result: dict[str, Any]) -> None:
    """``metrics.json`` (NaN as null) and the Markdown table ``metrics.md``."""
    from ..fileio import atomic_path, write_json

    write_json(out_dir / "metrics.json", _nan_to_none(result))
    with atomic_path(out_dir / "metrics.md") as tmp:
        tmp.write_text(metrics_table(result["mean"], result["reference"]), encoding="utf-8")


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
