"""Uncertainty of evaluation numbers: bootstrap confidence intervals over utterances, and paired
bootstrap tests between systems with Holm-Bonferroni adjustment.

The test set is a sample of utterances; a mean metric over it is an estimate. Resampling the
utterances with replacement gives the spread of that estimate:

- :func:`bootstrap_ci`: the mean of per-utterance values with a percentile bootstrap interval
  (NaN values, a metric that does not apply to an utterance, are left out and counted);
- :func:`paired_bootstrap`: two systems scored on the same utterances, compared through the
  per-utterance differences ``a - b``: the mean difference, its interval and a two-sided
  bootstrap p-value. Pairing removes the utterance-to-utterance variation that both systems
  share (a hard utterance is hard for both), so it detects differences that overlapping
  per-system intervals would hide;
- :func:`holm`: Holm-Bonferroni adjusted p-values for a family of tests;
- :func:`compare_systems`: every pair of systems on one metric, Holm-adjusted over the pairs,
  with which system is better where the difference is significant.

Everything is deterministic for a given ``seed``. A constant sample has a point interval, and a
system compared with itself (differences all zero) is never significant.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "DIRECTIONS",
    "RESAMPLES",
    "Interval",
    "bootstrap_ci",
    "compare_systems",
    "holm",
    "paired_bootstrap",
]

RESAMPLES = 2000  # bootstrap resamples: the p-value's resolution is 2 / (RESAMPLES + 1)
# How a metric ranks systems: "lower" or "higher" is better, or "zero": closer to 0 is better
# (a loudness ratio in dB; the pairs then compare absolute values).
DIRECTIONS = ("lower", "higher", "zero")
_CHUNK = 1 << 20  # resampled values drawn at a time: bounds the memory of a large test set


class Interval(NamedTuple):
    """A mean with its bootstrap interval: ``n`` values used, ``excluded`` NaNs left out. With
    ``n < 2`` (or a constant sample) the interval is the point ``low == mean == high``."""

    mean: float
    low: float
    high: float
    n: int
    excluded: int

    @property
    def is_point(self) -> bool:
        """True when the interval has no width: a constant sample or fewer than two values."""
        return self.n < 2 or self.low == self.high


def _finite(values: Sequence[float] | np.ndarray) -> tuple[np.ndarray, int]:
    """The non-NaN values as float64 ``(n,)`` and how many NaNs were left out."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    keep = ~np.isnan(x)
    return x[keep], int((~keep).sum())


def _resampled_means(x: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Means of ``resamples`` draws of ``len(x)`` values of ``x`` with replacement ``(R,)``."""
    rng = np.random.default_rng(seed)
    n = len(x)
    out = np.empty(resamples)
    step = max(1, _CHUNK // n)
    for start in range(0, resamples, step):
        count = min(step, resamples - start)
        out[start : start + count] = x[rng.integers(0, n, size=(count, n))].mean(axis=1)
    return out


def _percentiles(means: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def _check(confidence: float, resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")


def _bootstrap(
    values: Sequence[float] | np.ndarray, confidence: float, resamples: int, seed: int
) -> tuple[Interval, np.ndarray | None]:
    """:func:`bootstrap_ci`'s interval and its resampled means ``(R,)`` (``None`` for a
    point interval, whose resamples all have the mean)."""
    _check(confidence, resamples)
    x, excluded = _finite(values)
    if len(x) == 0:
        return Interval(math.nan, math.nan, math.nan, 0, excluded), None
    if len(x) == 1 or bool(np.all(x == x[0])):
        mean = float(x[0])  # exactly the constant, whatever the rounding of a sum
        return Interval(mean, mean, mean, len(x), excluded), None
    means = _resampled_means(x, resamples, seed)
    low, high = _percentiles(means, confidence)
    return Interval(float(x.mean()), low, high, len(x), excluded), means


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Interval:
    """The mean of ``values`` ``(n,)`` with its percentile bootstrap interval at
    ``confidence``: the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the
    means of ``resamples`` resamples with replacement. NaNs are left out (``excluded``); no
    values give NaNs, one value or a constant sample a point interval."""
    return _bootstrap(values, confidence, resamples, seed)[0]


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Paired bootstrap of the per-utterance differences ``a - b`` (``a``, ``b``: ``(n,)``,
    the same utterances in the same order; an utterance where either is NaN is left out).

    Returns ``{"n", "mean_diff", "low", "high", "p", "significant"}``: the mean difference
    with its percentile interval, and the two-sided bootstrap p-value
    ``min(1, 2 (k + 1) / (R + 1))`` with ``k`` the number of the ``R`` resampled mean
    differences on the far side of 0 (``<= 0`` for a positive mean difference, ``>= 0`` for a
    negative one; the ``+ 1`` keeps a Monte Carlo p-value above 0). ``significant`` is
    ``p < 1 - confidence``, unadjusted (:func:`compare_systems` adjusts a family of pairs).
    Differences all 0 (a system against itself) give ``p = 1``, and so do fewer than two
    pairs: one utterance cannot show a difference.
    """
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.shape[0]} and {y.shape[0]}")
    interval, means = _bootstrap(x - y, confidence, resamples, seed)  # NaN where either is
    p = 1.0
    if interval.n >= 2 and interval.mean != 0.0:
        far = 0  # a constant non-zero difference: no resample reaches 0
        if means is not None:
            far = int((means <= 0).sum() if interval.mean > 0 else (means >= 0).sum())
        p = min(1.0, 2.0 * (far + 1) / (resamples + 1))
    return {
        "n": interval.n,
        "mean_diff": interval.mean,
        "low": interval.low,
        "high": interval.high,
        "p": p,
        "significant": bool(p < 1.0 - confidence),
    }


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values: the ``i``-th smallest of ``m`` is multiplied by
    ``m - i`` (``i`` from 0), made non-decreasing in that order and capped at 1. Rejecting
    where the adjusted value is below ``alpha`` controls the family-wise error rate at
    ``alpha`` under any dependence between the tests."""
    m = len(p_values)
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: p_values[j])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def compare_systems(
    columns: Mapping[str, Sequence[float]],
    *,
    direction: str | None = None,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Every pair ``(a, b)`` of systems (in the order of ``columns``: name -> per-utterance
    values, the same utterances in the same order) by :func:`paired_bootstrap`, the p-values
    Holm-adjusted over the pairs (``p_holm``; ``significant`` is ``p_holm < 1 - confidence``).

    ``direction`` (one of :data:`DIRECTIONS`, or ``None`` when the metric ranks nothing) names
    which is better; a significant pair then gets ``"better": name``. With ``"zero"`` the pairs
    compare absolute values, so ``mean_diff`` is ``mean(|a| - |b|)``.
    """
    if direction is not None and direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS} or None, got {direction!r}")
    values = {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}
    if direction == "zero":
        values = {k: np.abs(v) for k, v in values.items()}
    pairs = []
    for a, b in itertools.combinations(values, 2):
        test = paired_bootstrap(
            values[a], values[b], confidence=confidence, resamples=resamples, seed=seed
        )
        pairs.append({"a": a, "b": b, **test})
    for pair, p_holm in zip(pairs, holm([p["p"] for p in pairs]), strict=True):
        pair["p_holm"] = p_holm
        pair["significant"] = bool(p_holm < 1.0 - confidence)
        if pair["significant"] and direction is not None:
            a_better = pair["mean_diff"] > 0 if direction == "higher" else pair["mean_diff"] < 0
            pair["better"] = pair["a"] if a_better else pair["b"]
    return pairs
