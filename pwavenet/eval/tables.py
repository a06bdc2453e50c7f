"""The tables of an evaluation, built once as rows of strings and rendered as Markdown
(``metrics.md``, the command line) or HTML (``report.html``):

- :func:`mean_rows`: one row per system, each metric as ``mean [low, high]`` (the bootstrap
  95 % interval over utterances, :mod:`pwavenet.eval.stats`);
- :func:`significance_rows`: for each metric and pair of systems, the paired bootstrap's mean
  difference, its interval, the Holm-adjusted p-value and which system is better;
- :func:`utterance_rows`: one row per utterance, the main metrics of every system.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from typing import Any

from .metrics import METRIC_COLUMNS, METRIC_DIRECTIONS

__all__ = [
    "UTTERANCE_METRICS",
    "html_table",
    "markdown_table",
    "mean_rows",
    "metric_keys",
    "metrics_markdown",
    "metrics_table",
    "significance_rows",
    "utterance_rows",
]

Rows = tuple[list[str], list[list[str]]]  # (header, rows); a row's first cell names it
UTTERANCE_METRICS = ("mrstft", "mcd_db", "loudness_db", "f0_rmse_hz", "voiced_recall")
_STATS_NOTE = (
    "Means over utterances with percentile bootstrap 95 % intervals; pairs of systems compared by "
    "a paired bootstrap of the per-utterance differences, p-values Holm-Bonferroni adjusted over "
    "the pairs of each metric (not across metrics)."
)


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None or math.isnan(value) else format(value, spec)


def metric_keys(metrics: Iterable[Mapping[str, Any]]) -> list[str]:
    """The keys of some metric dicts: those of :data:`METRIC_COLUMNS` in its order, then any
    others (further measures) in the order met."""
    seen = dict.fromkeys(k for m in metrics for k in m)
    return [k for k in METRIC_COLUMNS if k in seen] + [k for k in seen if k not in METRIC_COLUMNS]


def _label(key: str) -> str:
    return METRIC_COLUMNS.get(key, key)


def _with_interval(mean: float, ci: Mapping[str, Any] | None) -> str:
    """``mean [low, high]``, or the mean alone for a point interval or none."""
    if ci is None or math.isnan(mean) or ci["low"] == ci["high"] or math.isnan(ci["low"]):
        return _fmt(mean)
    return f"{_fmt(mean)} [{_fmt(ci['low'])}, {_fmt(ci['high'])}]"


def mean_rows(
    mean: Mapping[str, Mapping[str, float]],
    reference: Mapping[str, float] | None = None,
    ci95: Mapping[str, Mapping[str, Any]] | None = None,
) -> Rows:
    """One row per system (the reference's own voiced fraction first, when given) with each
    metric's mean, and its bootstrap interval where ``ci95`` has one."""
    keys = metric_keys(mean.values()) or list(METRIC_COLUMNS)
    rows = []
    if reference is not None:
        rows.append(["reference", *(_fmt(reference.get(k, math.nan)) for k in keys)])
    for name, m in mean.items():
        cis = (ci95 or {}).get(name, {})
        rows.append([name, *(_with_interval(m.get(k, math.nan), cis.get(k)) for k in keys)])
    return ["system", *map(_label, keys)], rows


def significance_rows(pairs: Mapping[str, list[Mapping[str, Any]]]) -> Rows:
    """For each metric and pair ``a``, ``b``: the mean of ``a - b`` over the utterances with
    its interval (``|a| - |b|`` for a metric best at 0), the Holm-adjusted p-value and the
    verdict."""
    rows = []
    for key, tests in pairs.items():
        label = _label(key) + (" (|x|)" if METRIC_DIRECTIONS.get(key) == "zero" else "")
        for t in tests:
            diff = _with_interval(t["mean_diff"], t)
            p = t["p_holm"]
            if "better" in t:
                verdict = f"{t['better']} better"
            else:
                verdict = "differ" if t["significant"] else "no significant difference"
            p_text = "< 0.001" if p < 0.001 else f"{p:.3f}"
            rows.append([label, f"{t['a']} vs {t['b']}", diff, p_text, str(t["n"]), verdict])
    header = ["metric", "pair a vs b", "mean a - b [95 % CI]", "p (Holm)", "n", "verdict"]
    return header, rows


def utterance_rows(
    utterances: Mapping[str, Mapping[str, Mapping[str, float]]],
    keys: Iterable[str] = UTTERANCE_METRICS,
) -> Rows:
    """One row per utterance: each of ``keys`` (those present) for every system."""
    first = next(iter(utterances.values()), {})
    systems = list(first)
    keys = [k for k in keys if any(k in m for m in first.values())]
    header = ["utterance", *(f"{_label(k)}: {s}" for k in keys for s in systems)]
    rows = [
        [uid, *(_fmt(per[s].get(k, math.nan)) for k in keys for s in systems)]
        for uid, per in utterances.items()
    ]
    return header, rows


def markdown_table(table: Rows) -> str:
    header, rows = table
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def html_table(table: Rows) -> str:
    header, rows = table
    head = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    body = "".join(
        f"<tr><th>{html.escape(row[0])}</th>"
        + "".join(f"<td>{html.escape(c)}</td>" for c in row[1:])
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def metrics_table(
    mean: Mapping[str, Mapping[str, float]],
    reference: Mapping[str, float] | None = None,
    ci95: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """A Markdown table of mean metrics, one row per system (and the reference's own voiced
    fraction first, when given), with bootstrap intervals where ``ci95`` has them."""
    return markdown_table(mean_rows(mean, reference, ci95))


def metrics_markdown(result: Mapping[str, Any]) -> str:
    """``metrics.md``: the means with their intervals, the significance of every pair, the
    notes, and the per-utterance table of the main metrics."""
    parts = [
        "## Metrics (mean [95 % interval] over utterances)\n",
        metrics_table(result["mean"], result.get("reference"), result.get("ci95")),
    ]
    if result.get("pairs"):
        parts += ["\n## Paired differences\n", markdown_table(significance_rows(result["pairs"]))]
    notes = [_STATS_NOTE, *result.get("notes", [])]
    parts += ["\n## Notes\n", "".join(f"- {n}\n" for n in notes)]
    parts += ["\n## Per utterance\n", markdown_table(utterance_rows(result["utterances"]))]
    return "".join(parts)
