"""The evaluation driver: score every system's outputs against the references, with the
Griffin-Lim baseline and the model scores, and write ``metrics.json`` and ``metrics.md``.

:func:`evaluate_systems` checks every input before it writes anything, measures every utterance
with the per-utterance measures of :mod:`pwavenet.eval.metrics` (``measures``: one more function
there is one more set of columns), and adds the uncertainty of :mod:`pwavenet.eval.stats`:
bootstrap intervals of the means and paired tests between systems. :func:`load_metrics` reads
its ``metrics.json`` back and :func:`metrics_table` renders the mean metrics in Markdown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from ..audio import LogMelSpectrogram
from ..config import AudioConfig
from ..errors import AudioError, DataError
from .griffin_lim import griffin_lim
from .metrics import MEASURES, METRIC_COLUMNS, METRIC_DIRECTIONS, Measure, measure
from .pitch import f0_track
from .scores import student_kl_nats, synthesis_speed, teacher_nll_bits
from .standard import evaluation_notes, reference_agreement, reference_analysis
from .standard import measure as standard_measure
from .stats import RESAMPLES, Interval, bootstrap_ci, compare_systems
from .tables import metric_keys, metrics_markdown, metrics_table

__all__ = [
    "METRIC_COLUMNS",
    "METRIC_DIRECTIONS",
    "REPORT_FILES",
    "evaluate_systems",
    "evaluation_measures",
    "load_metrics",
    "metrics_table",
]

REPORT_FILES = ("metrics.json", "metrics.md", "report.html")
CONFIDENCE = 0.95  # of the bootstrap intervals and the significance of the paired tests
_FEW_UTTERANCES = 10  # under this many, the bootstrap's intervals are too narrow to trust


# Long: the docstring documents every key of the result.
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
    measures: Sequence[Measure] = MEASURES,
    notes: Sequence[str] = (),
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare every system's ``<folder>/<id>.wav`` with each reference ``<id>.wav``.

    ``systems`` maps names to folders. With ``with_griffin_lim`` the reference's mel is also
    inverted by Griffin-Lim (written to ``out_dir/griffin-lim/``) and scored as one more system.
    Each output is scored by ``measures`` (:func:`pwavenet.eval.metrics.measure`). With a
    ``teacher`` (a loaded export, on any device) every reference is scored by its NLL in bits
    per sample; with a ``student`` and a ``teacher``, by the student's KL to the teacher in nats
    per sample. ``progress`` wraps the loop over references. ``notes`` (e.g. a measure left out
    for a missing package) go into the result's ``notes`` with its own.

    Returns and writes as ``out_dir/metrics.json``::

        {"utterances": {id: {system: {metric: value}}},
         "mean": {system: {metric: mean}},
         "ci95": {system: {metric: {"low", "high", "n"}}},
         "pairs": {metric: [{"a", "b", "n", "mean_diff", "low", "high", "p", "p_holm",
                             "significant", "better" (when significant)}]},
         "stats": {"confidence", "resamples", "seed", "method", "directions"},
         "notes": [str], "reference": {"voiced_fraction"},
         "models": {"teacher_nll_bits": {"mean", id: ...}, "student_kl_nats": ...},
         "models_ci95": {"teacher_nll_bits": {"low", "high", "n"}, ...},
         "speed": {system: synthesis_speed(folder)},
         "inputs": {"references": {id: path}, "systems": {system: folder}}}

    Means leave out NaNs (a metric that does not apply to an utterance; counted in ``n`` and
    the notes); intervals are percentile bootstraps over utterances; ``pairs`` holds paired
    bootstrap tests of the per-utterance differences ``a - b`` for the metrics of
    :data:`METRIC_DIRECTIONS`, Holm-adjusted over the pairs of each metric
    (:func:`pwavenet.eval.stats.compare_systems`). ``metrics.md`` holds the same tables in
    Markdown. A reference that is a ``.npy`` mel rather than audio, two references with one
    id, a missing output, a sample rate other than the reference's, or a length that differs
    by more than one hop is a one-line error naming the file, raised before anything is written.
    """
    from ..audio import read_audio

    out_dir = Path(out_dir)
    refs = _check_references(references)
    pairs = [(r, _check_outputs(r, systems, audio)) for r in refs]
    speed = {name: synthesis_speed(folder) for name, folder in systems.items()}
    per_utt: dict[str, dict[str, dict[str, float]]] = {}
    voiced: list[float] = []
    agreement: list[dict[str, float]] = []
    scores: dict[str, dict[str, float]] = {k: {} for k in _score_names(teacher, student)}
    mel = LogMelSpectrogram.from_config(audio)
    for ref_path, paths in progress(pairs) if progress else pairs:
        ref = read_audio(ref_path, audio.sample_rate)[0]  # checked: nothing is half-written
        outputs = {name: read_audio(path)[0] for name, path in paths.items()}
        if with_griffin_lim:
            gl_path = out_dir / "griffin-lim" / f"{ref_path.stem}.wav"
            outputs["griffin-lim"] = _griffin_lim_output(ref, mel, audio, gl_path, iterations)
        per_utt[ref_path.stem] = {n: measure(x, ref, audio, measures) for n, x in outputs.items()}
        if standard_measure in measures:  # how far the two pitch trackers agree on references
            agreement.append(
                reference_agreement(reference_analysis(ref, audio.sample_rate), audio.sample_rate)
            )
        f0_ref = f0_track(ref, audio.sample_rate, audio.hop_length)
        voiced.append(float(np.mean(f0_ref > 0)) if len(f0_ref) else math.nan)
        for name, value in _model_scores(ref, teacher, student, kl_samples).items():
            scores[name][ref_path.stem] = value
    result = _result(per_utt, voiced, scores, speed, resamples, seed)
    result["notes"] = [*notes, *result["notes"]]
    if any(agreement):
        keys = next(a for a in agreement if a)
        result["reference"]["tracker_agreement"] = {
            k: _nanmean([a.get(k, math.nan) for a in agreement]) for k in keys
        }
    result["inputs"] = {  # where the audio is, for `pwavenet listen` beyond the report's copies
        "references": {p.stem: str(p.resolve()) for p, _ in pairs},
        "systems": {name: str(Path(folder).resolve()) for name, folder in systems.items()},
    }
    _write_metrics(out_dir, result)
    return result


def evaluation_measures(*, standard: bool = True) -> dict[str, Any]:
    """The ``measures`` and ``notes`` keywords of :func:`evaluate_systems`: the built-in
    measures, and with ``standard`` those of :mod:`pwavenet.eval.standard` (each computed where
    its package is installed; the notes name the skipped ones and the versions that ran)."""
    if not standard:
        return {"measures": MEASURES, "notes": ()}
    return {"measures": (*MEASURES, standard_measure), "notes": evaluation_notes()}


def _check_references(references: list[Any]) -> list[Path]:
    """The references as paths, refused when there are none, when one is a ``.npy`` mel (the
    metrics compare waveforms) or when two share an id (their file name without suffix)."""
    if not references:
        raise DataError("no reference files given")
    refs = [Path(r) for r in references]
    seen: dict[str, Path] = {}
    for ref in refs:
        if ref.suffix.lower() == ".npy":
            raise DataError(
                f"{ref}: a mel, not audio; evaluate compares outputs with the reference "
                "waveforms (for mel-only inputs, such as a TTS model's, use `pwavenet "
                "synthesize` and listen)"
            )
        if ref.stem in seen:
            raise DataError(
                f"{ref}: a second reference with the id {ref.stem!r} (first {seen[ref.stem]})"
            )
        seen[ref.stem] = ref
    return refs


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
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """The result of :func:`evaluate_systems` from its per-utterance numbers."""
    names = list(next(iter(per_utt.values())))
    keys = metric_keys(m for u in per_utt.values() for m in u.values())
    columns = {
        key: {n: [u[n].get(key, math.nan) for u in per_utt.values()] for n in names} for key in keys
    }
    boot = {
        k: {n: _bootstrap(v, resamples, seed) for n, v in c.items()} for k, c in columns.items()
    }
    pairs = {
        key: compare_systems(
            columns[key],
            direction=METRIC_DIRECTIONS[key],
            confidence=CONFIDENCE,
            resamples=resamples,
            seed=seed,
        )
        for key in keys
        if key in METRIC_DIRECTIONS and len(names) > 1
    }
    model_boot = {k: _bootstrap(list(v.values()), resamples, seed) for k, v in scores.items()}
    return {
        "utterances": per_utt,
        "mean": {n: {k: boot[k][n].mean for k in keys} for n in names},
        "ci95": {n: {k: _ci(boot[k][n]) for k in keys} for n in names},
        "pairs": pairs,
        "stats": {
            "confidence": CONFIDENCE,
            "resamples": resamples,
            "seed": seed,
            "method": "percentile bootstrap over utterances; paired bootstrap of per-utterance "
            "differences; Holm-Bonferroni over the pairs of each metric",
            "directions": {k: METRIC_DIRECTIONS[k] for k in pairs},
        },
        "notes": _stat_notes(columns, len(per_utt)),
        "reference": {"voiced_fraction": _nanmean(voiced)},
        "models": {k: {"mean": model_boot[k].mean, **v} for k, v in scores.items()},
        "models_ci95": {k: _ci(b) for k, b in model_boot.items()},
        "speed": {k: v for k, v in speed.items() if v is not None},
    }


def _bootstrap(values: list[float], resamples: int, seed: int) -> Interval:
    return bootstrap_ci(values, confidence=CONFIDENCE, resamples=resamples, seed=seed)


def _ci(interval: Interval) -> dict[str, Any]:
    """An interval as ``metrics.json`` holds it: ``{"low", "high", "n"}`` (``n``: the values
    that were not NaN)."""
    return {"low": interval.low, "high": interval.high, "n": interval.n}


def _stat_notes(columns: dict[str, dict[str, list[float]]], utterances: int) -> list[str]:
    """What a reader of the intervals must know: too few utterances, and the metrics that do
    not apply to some utterances of some systems."""
    notes = []
    if utterances < _FEW_UTTERANCES:
        notes.append(
            f"Only {utterances} utterance{'s' if utterances != 1 else ''}: bootstrap intervals "
            f"are too narrow and p-values too small below about {_FEW_UTTERANCES} "
            "(with one, intervals are points and nothing is significant)."
        )
    for key, per_system in columns.items():
        missing = {n: sum(math.isnan(v) for v in vs) for n, vs in per_system.items()}
        parts = [f"{count} of {n}" for n, count in missing.items() if count]
        if parts:
            notes.append(
                f"{key}: undefined for {', '.join(parts)} (of {utterances} utterances), left "
                "out of the means, intervals and pairs (e.g. no voiced frames to compare)."
            )
    return notes


def _write_metrics(out_dir: Path, result: dict[str, Any]) -> None:
    """``metrics.json`` (NaN as null) and the Markdown table ``metrics.md``."""
    from ..fileio import atomic_path, write_json

    write_json(out_dir / "metrics.json", _nan_to_none(result))
    with atomic_path(out_dir / "metrics.md") as tmp:
        tmp.write_text(metrics_markdown(result), encoding="utf-8")


def _nan_to_none(value: Any) -> Any:
    """NaN (a metric that does not apply, e.g. F0 RMSE without voiced frames) as JSON null."""
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _none_to_nan(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _none_to_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_none_to_nan(v) for v in value]
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
