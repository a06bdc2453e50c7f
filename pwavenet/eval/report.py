"""The evaluation report: what a run achieved, in words computed from its numbers, and an HTML
page with audio players, mel spectrograms side by side and training curves.

:func:`summarize` turns the result of :func:`pwavenet.eval.evaluate.evaluate_systems` into
sentences (every one states a measured number and what it means against a threshold named in
the sentence). :func:`write_report` writes ``report.html`` with ``figures/*.png`` and copies of
the audio it plays under ``audio/``, so the report folder stands alone.
"""

from __future__ import annotations

import html
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audio import LogMelSpectrogram, read_audio
from ..config import AudioConfig
from ..fileio import atomic_path
from .standard import COLUMNS as STANDARD_COLUMNS

__all__ = ["LOUDNESS_TOLERANCE_DB", "PITCH_RECALL", "check_report", "summarize", "write_report"]

LOUDNESS_TOLERANCE_DB = 2.0  # an output further than this from the reference's level is flagged
PITCH_NOTE = (
    "These models take log-F0 and voicing besides the mel (audio.pitch), here tracked from each "
    "reference with the evaluation's F0 tracker, as a text-to-speech front end would supply "
    "them; a model with excitation 'sine' also hears a sine at that F0. Mel-only models of the "
    "same budget are measured beside them in docs/pitch.md."
)
PITCH_RECALL = 0.8  # voiced-frame recall from which an output counts as voiced like the reference
_UNVOICED_RECALL = 0.2  # below this, an output is essentially unvoiced
_MODEL_SCORES = {
    "teacher_nll_bits": "teacher NLL of the references (bits/sample)",
    "student_kl_nats": "student KL to the teacher given the references' mels (nats/sample)",
}


def _fmt(value: float, spec: str = ".2f") -> str:
    return "n/a" if value is None or math.isnan(value) else format(value, spec)


def _pitch_sentence(name: str, m: dict[str, float], ref_voiced: float) -> str:
    recall = m["voiced_recall"]
    if math.isnan(recall):
        return f"{name}: the reference has no voiced frames, so pitch is not scored."
    share = f"{recall:.0%} of the frames where the reference is voiced"
    if recall >= PITCH_RECALL:
        verdict = f"pitch is present (recall >= {PITCH_RECALL})"
    elif recall >= _UNVOICED_RECALL:
        verdict = f"partly voiced (recall under {PITCH_RECALL})"
    else:
        verdict = f"essentially unvoiced (recall under {_UNVOICED_RECALL}): no periodicity yet"
    ref = f"the reference is voiced in {_fmt(ref_voiced, '.0%')} of its frames"
    line = f"{name}: voiced in {share} ({ref}): {verdict}"
    if not math.isnan(m["f0_rmse_hz"]):
        line += f"; where both are voiced, F0 is off by {m['f0_rmse_hz']:.1f} Hz RMS"
    return line + "."


def _loudness_sentence(name: str, db: float) -> str:
    if abs(db) <= LOUDNESS_TOLERANCE_DB:
        return (
            f"{name}: {db:+.1f} dB against the reference's loudness, within "
            f"{LOUDNESS_TOLERANCE_DB:g} dB."
        )
    side, verdict = ("quieter", ": it whispers") if db < 0 else ("louder", "")
    tolerance = f"tolerance {LOUDNESS_TOLERANCE_DB:g} dB"
    return f"{name}: {abs(db):.1f} dB {side} than the reference ({tolerance}){verdict}."


def _significance_sentences(pairs: list[dict[str, Any]], confidence: float) -> list[str]:
    """One sentence on which MR-STFT differences between systems are significant."""
    if not pairs:
        return []
    said = []
    for t in pairs:
        p = f"p = {t['p_holm']:.3f}" if t["p_holm"] >= 0.001 else "p < 0.001"
        if "better" in t:
            worse = t["b"] if t["better"] == t["a"] else t["a"]
            said.append(f"{t['better']} is closer than {worse} ({p})")
        else:
            said.append(f"{t['a']} and {t['b']} do not differ significantly ({p})")
    n = max(t["n"] for t in pairs)
    return [
        f"On MR-STFT, by a paired bootstrap over {n} utterances (Holm-adjusted, "
        f"{1 - confidence:.0%} level): " + "; ".join(said) + "."
    ]


def _tracker_sentences(agree: dict[str, float] | None) -> list[str]:
    """How far the two pitch trackers agree on the references (nothing without WORLD's)."""
    if not agree:
        return []
    return [
        f"On the references the two pitch trackers (YIN and WORLD) agree on voicing in "
        f"{agree['vuv_agreement']:.0%} of the frames; where both hear pitch, "
        f"{agree['gross_error_rate']:.0%} of the frames differ by more than 20 % and the "
        f"rest by {agree['fine_error_cents']:.0f} cents RMS: read the pitch figures with "
        "that margin."
    ]


def summarize(result: dict[str, Any]) -> list[str]:
    """Sentences on what the evaluated systems achieved, computed from ``result`` (the dict
    :func:`~pwavenet.eval.evaluate.evaluate_systems` returns)."""
    mean: dict[str, dict[str, float]] = result["mean"]
    ref_voiced = result.get("reference", {}).get("voiced_fraction", math.nan)
    lines = []
    ranked = sorted(
        (n for n in mean if not math.isnan(mean[n]["mrstft"])), key=lambda n: mean[n]["mrstft"]
    )
    if ranked:
        order = ", then ".join(f"{n} ({mean[n]['mrstft']:.2f})" for n in ranked)
        lines.append(
            f"Closest to the reference's spectrum (MR-STFT distance, lower is better): {order}."
        )
    confidence = result.get("stats", {}).get("confidence", 0.95)
    lines += _significance_sentences(result.get("pairs", {}).get("mrstft", []), confidence)
    neural = [n for n in ranked if n != "griffin-lim"]
    if "griffin-lim" in mean and neural:
        gl = mean["griffin-lim"]["mrstft"]
        beaten = [n for n in neural if mean[n]["mrstft"] < gl]
        lines.append(
            f"{', '.join(beaten)} beat{'s' if len(beaten) == 1 else ''} the no-training "
            f"Griffin-Lim baseline ({gl:.2f}) on MR-STFT."
            if beaten
            else f"No trained system beats the no-training Griffin-Lim baseline ({gl:.2f}) on "
            "MR-STFT yet."
        )
    if "student" in mean and "teacher" in mean:
        s, t = mean["student"]["mrstft"], mean["teacher"]["mrstft"]
        relation = "at most" if s <= t else "above"
        lines.append(
            f"The student's MR-STFT distance ({s:.2f}) is {relation} the teacher's ({t:.2f})."
        )
    for name in mean:
        lines.append(_pitch_sentence(name, mean[name], ref_voiced))
        lines.append(_loudness_sentence(name, mean[name]["loudness_db"]))
    lines += _tracker_sentences(result.get("reference", {}).get("tracker_agreement"))
    models = result.get("models", {})
    if "teacher_nll_bits" in models:
        nll = models["teacher_nll_bits"]["mean"]
        relation = "below" if nll < 16 else "above"
        lines.append(
            f"The teacher's NLL of the references is {nll:.2f} bits/sample, "
            f"{abs(16 - nll):.2f} bits {relation} that of uniform 16-bit noise (16)."
        )
    if "student_kl_nats" in models:
        kl = models["student_kl_nats"]["mean"]
        lines.append(f"The student's KL to the teacher is {kl:.3f} nats/sample on these mels.")
    speed = result.get("speed", {})
    for name, sp in speed.items():
        lines.append(
            f"{name} synthesized {sp['samples_per_s']:,.0f} samples/s on {sp['device']} (batch "
            f"{sp['batch_size']}): real-time factor {sp['rtf']:.3f}"
            f"{' (faster than real time)' if sp['rtf'] < 1 else ' (slower than real time)'}."
        )
    if "student" in speed and "teacher" in speed:
        ratio = speed["student"]["samples_per_s"] / speed["teacher"]["samples_per_s"]
        lines.append(f"The student synthesized {ratio:.1f}x as fast as the teacher.")
    return lines


# --------------------------------------------------------------------------- HTML


def _mel_figure(wavs: dict[str, np.ndarray], audio: AudioConfig, out_png: Path, title: str) -> Path:
    """One PNG with the log-mel spectrogram of every signal, stacked (same colour scale)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    mel = LogMelSpectrogram.from_config(audio)
    with torch.no_grad():
        mels = {
            k: mel(torch.from_numpy(np.asarray(v, np.float32))).numpy() for k, v in wavs.items()
        }
    low = min(float(m.min()) for m in mels.values())
    high = max(float(m.max()) for m in mels.values())
    fig, axes = plt.subplots(len(mels), 1, figsize=(8, 1.7 * len(mels)), squeeze=False)
    seconds = audio.hop_length / audio.sample_rate
    for ax, (name, m) in zip(axes[:, 0], mels.items(), strict=True):
        ax.imshow(
            m,
            origin="lower",
            aspect="auto",
            vmin=low,
            vmax=high,
            cmap="magma",
            extent=(0, m.shape[1] * seconds, 0, m.shape[0]),
        )
        ax.set_ylabel(name, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("seconds", fontsize=8)
    axes[0, 0].set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return out_png


def _table_html(rows: dict[str, dict[str, float]], columns: dict[str, str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns.values())
    body = []
    for name, m in rows.items():
        cells = "".join(f"<td>{_fmt(m.get(k, math.nan), '.3f')}</td>" for k in columns)
        body.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    return f"<table><tr><th>system</th>{head}</tr>{''.join(body)}</table>"


def write_report(
    result: dict[str, Any],
    references: list[Path],
    systems: dict[str, Path],
    audio: AudioConfig,
    out_dir: str | Path,
    *,
    runs: dict[str, Path] | None = None,
    max_utterances: int = 8,
    title: str = "pwavenet evaluation",
) -> Path:
    """Write ``out_dir/report.html``: the summary sentences, the metrics table, model scores
    and speed, and for the first ``max_utterances`` references audio players and a mel figure
    (reference, each system, Griffin-Lim), plus one training-curve figure per run in ``runs``
    (name -> run folder with ``log.jsonl``). The audio is copied under ``out_dir/audio``."""
    from .curves import plot_curves

    out_dir = Path(out_dir)
    sources = dict(systems)
    if "griffin-lim" in result["mean"]:
        sources["griffin-lim"] = out_dir / "griffin-lim"
    parts = [f"<h1>{html.escape(title)}</h1>", "<h2>What this run achieved</h2><ul>"]
    parts += [f"<li>{html.escape(s)}</li>" for s in summarize(result)]
    parts.append("</ul>")
    if audio.pitch:
        parts.append(f"<p><b>Pitch-informed.</b> {html.escape(PITCH_NOTE)}</p>")
    parts += _numbers_html(result)
    for name, run in (runs or {}).items():
        png = plot_curves({name: Path(run)}, out_dir / "figures" / f"curves-{name}.png")
        parts.append(
            f"<h2>Training curves: {html.escape(name)}</h2>"
            f'<img src="{html.escape(png.relative_to(out_dir).as_posix())}" alt="curves">'
        )
    parts.append("<h2>Utterances</h2>")
    parts += [_utterance_html(ref, sources, audio, out_dir) for ref in references[:max_utterances]]
    parts.append(LISTEN_NOTE)
    page = (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;max-width:60em;margin:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
        "td{text-align:right}.row{display:flex;gap:1em;flex-wrap:wrap}"
        "</style></head><body>" + "\n".join(parts) + "</body></html>\n"
    )
    with atomic_path(out_dir / "report.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out_dir / "report.html"


def _numbers_html(result: dict[str, Any]) -> list[str]:
    """The report's tables: mean metrics with their bootstrap intervals (the reference's own
    row first), the paired differences between systems, the notes, the model scores of the
    references, the synthesis speed, and the per-utterance metrics, where the result has them."""
    from .tables import html_table, mean_rows, significance_rows, utterance_rows

    parts = ["<h2>Metrics (mean [95 % interval] over utterances)</h2>"]
    parts.append(html_table(mean_rows(result["mean"], result["reference"], result.get("ci95"))))
    if result.get("pairs"):
        parts.append(
            "<h2>Paired differences</h2><p>Each pair of systems compared on the same utterances "
            "(paired bootstrap of the per-utterance differences; p-values Holm-Bonferroni "
            "adjusted over the pairs of each metric).</p>"
        )
        parts.append(html_table(significance_rows(result["pairs"])))
    if result.get("notes"):
        parts.append("<h2>Notes</h2><ul>")
        parts += [f"<li>{html.escape(n)}</li>" for n in result["notes"]]
        parts.append("</ul>")
    models = result.get("models", {})
    if models:
        parts.append("<h2>Model scores of the references</h2><ul>")
        for key, values in models.items():
            label = _MODEL_SCORES.get(key, key)
            ci = result.get("models_ci95", {}).get(key)
            interval = f" [{_fmt(ci['low'], '.4f')}, {_fmt(ci['high'], '.4f')}]" if ci else ""
            parts.append(f"<li>{html.escape(label)}: {_fmt(values['mean'], '.4f')}{interval}</li>")
        parts.append("</ul>")
    if result.get("speed"):
        cols = {"samples_per_s": "samples/s", "rtf": "real-time factor", "seconds": "audio (s)"}
        parts.append("<h2>Synthesis speed</h2>" + _table_html(result["speed"], cols))
    if result.get("utterances"):
        parts.append(
            "<details><summary><b>Metrics per utterance</b> (the main ones; metrics.json holds "
            "every metric)</summary>" + html_table(utterance_rows(result["utterances"]))
        )
        parts.append("</details>")
    return parts


def _utterance_html(ref: Path, sources: dict[str, Path], audio: AudioConfig, out_dir: Path) -> str:
    """One utterance's audio players (copies under ``out_dir/audio``) and its mel figure: the
    reference and each source folder's ``<id>.wav``."""
    uid = ref.stem
    wavs = {"reference": ref, **{n: Path(f) / f"{uid}.wav" for n, f in sources.items()}}
    players = []
    for name, path in wavs.items():
        copy = out_dir / "audio" / name / f"{uid}.wav"
        if path.resolve() != copy.resolve():
            with atomic_path(copy) as tmp:
                shutil.copyfile(path, tmp)
        rel = html.escape(copy.relative_to(out_dir).as_posix())
        players.append(
            f'<div>{html.escape(name)}<br><audio controls preload=none src="{rel}"></audio></div>'
        )
    png = _mel_figure(
        {n: read_audio(p, audio.sample_rate)[0] for n, p in wavs.items()},
        audio,
        out_dir / "figures" / f"mel-{uid}.png",
        uid,
    )
    return (
        f"<h3>{html.escape(uid)}</h3><div class=row>{''.join(players)}</div>"
        f'<img src="{html.escape(png.relative_to(out_dir).as_posix())}" alt="mel {uid}">'
    )


LISTEN_NOTE = (
    "<h2>Listen blind</h2><p>The players above name the systems. For a blind MUSHRA-style test, "
    "<code>pwavenet listen</code> on this folder writes <code>listen.html</code> (hidden "
    "labels, sliders, ratings saved as JSON) and <code>pwavenet listen-score</code> turns the "
    "ratings into means with 95 % intervals (docs/listening.md).</p>"
)

# --------------------------------------------------------------------------- checking

# n/a when there are no (shared) voiced frames: the metric itself, and its intervals and pairs;
# the standard measures where they cannot score a pair (the report's notes say why) and the
# trackers' agreement on references where they never both hear pitch
_NULLABLE = {"f0_rmse_hz", "voiced_recall", *STANDARD_COLUMNS, "tracker_agreement"}
_PNG = b"\x89PNG\r\n\x1a\n"


def _bad_numbers(value: Any, path: str) -> list[str]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _bad_numbers(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _bad_numbers(v, f"{path}[{i}]")]
    if value is None:
        segments = {part.split("[")[0] for part in path.split(".")}
        return [] if segments & _NULLABLE else [f"{path} is null"]
    if not isinstance(value, int | float | str):  # bool is an int: a test's significance
        return [f"{path} is {value!r}"]
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{path} is {value}"]
    return []


def check_report(out_dir: str | Path) -> list[str]:
    """Problems with a report folder written by :func:`write_report` (empty when complete):
    every report file present, every number in ``metrics.json`` finite (null only where a pitch
    metric does not apply), every image a PNG and every audio file the page plays readable."""
    import json
    import re

    import soundfile as sf

    from .evaluate import REPORT_FILES

    out_dir = Path(out_dir)
    problems = [
        f"{out_dir / n}: missing or empty"
        for n in REPORT_FILES
        if not (out_dir / n).is_file() or (out_dir / n).stat().st_size == 0
    ]
    if problems:
        return problems

    def refuse(constant: str) -> float:
        raise ValueError(f"non-finite number {constant}")

    try:
        metrics = json.loads((out_dir / "metrics.json").read_text(), parse_constant=refuse)
        problems += [f"metrics.json: {p}" for p in _bad_numbers(metrics, "metrics")]
    except ValueError as exc:
        problems.append(f"{out_dir / 'metrics.json'}: {exc}")
    page = (out_dir / "report.html").read_text(encoding="utf-8")
    images = re.findall(r'<img src="([^"]+)"', page)
    sounds = re.findall(r'<audio[^>]* src="([^"]+)"', page)
    if not images or not sounds:
        problems.append(f"{out_dir / 'report.html'}: no figures or no audio players")
    for rel in images:
        path = out_dir / html.unescape(rel)
        if not path.is_file() or path.read_bytes()[:8] != _PNG:
            problems.append(f"{path}: missing or not a PNG")
    for rel in sounds:
        path = out_dir / html.unescape(rel)
        try:
            if sf.info(str(path)).frames == 0:
                problems.append(f"{path}: empty audio")
        except (sf.LibsndfileError, RuntimeError):
            problems.append(f"{path}: missing or unreadable audio")
    return problems
