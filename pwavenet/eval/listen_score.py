"""Scoring the ratings of a listening test (:mod:`pwavenet.eval.listen`): checked rating files in,
per-system means with 95 % confidence intervals out, after the post-screening of ITU-R BS.1534.

Post-screening: a rater who rates the hidden reference below :data:`SCREEN_SCORE` in more than
:data:`SCREEN_SHARE` of the trials is excluded (they did not hear the reference as the
reference). The interval is the standard's: ``mean +- t(0.975, n - 1) * s / sqrt(n)`` over all
``n`` ratings of a system by the kept raters (every trial of every rater), with ``s`` the sample
standard deviation. It treats ratings as independent, which ratings by one rater are not quite:
with few raters, read it as a lower bound on the uncertainty.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import DataError
from .listen import RATINGS_FORMAT, REFERENCE

__all__ = [
    "SCREEN_SCORE",
    "SCREEN_SHARE",
    "ratings_table",
    "read_ratings",
    "score_ratings",
    "t_interval",
]

SCREEN_SCORE = 90.0  # a hidden reference rated below this counts as missed ...
SCREEN_SHARE = 0.15  # ... and a rater who misses it in more than this share of trials is excluded


def _refuse_constant(constant: str) -> float:
    raise ValueError(f"non-finite number {constant}")


def _check_trial(path: Path, number: int, trial: Any) -> tuple[str, dict[str, float]]:
    """One trial of a rating file as ``(utterance, {system: rating})``, or a one-line error."""
    where = f"{path}: trial {number}"
    if not isinstance(trial, dict) or not isinstance(trial.get("utterance"), str):
        raise DataError(f"{where}: missing its utterance")
    ratings = trial.get("ratings")
    if not isinstance(ratings, dict) or not ratings:
        raise DataError(f"{where}: missing its ratings")
    for name, value in ratings.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DataError(f"{where}: the rating of {name!r} is {value!r}, not a number")
        if not 0 <= value <= 100:
            raise DataError(f"{where}: the rating of {name!r} is {value}, outside 0-100")
    if REFERENCE not in ratings:
        raise DataError(f"{where}: no rating of the hidden {REFERENCE}")
    return trial["utterance"], {name: float(v) for name, v in ratings.items()}


def read_ratings(path: str | Path) -> dict[str, Any]:
    """One rating file saved by the listening page, checked: ``{"page_id", "rater",
    "created", "trials": {utterance: {system: rating}}}``. Anything else (not JSON, another
    format, a missing field, a rating outside 0-100) is a one-line error naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != RATINGS_FORMAT:
        raise DataError(f"{path}: not a pwavenet rating file (no format {RATINGS_FORMAT!r})")
    for key in ("page_id", "rater", "created"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise DataError(f"{path}: missing field {key!r}")
    if not isinstance(data.get("trials"), list) or not data["trials"]:
        raise DataError(f"{path}: missing field 'trials' (a list of rated trials)")
    trials: dict[str, dict[str, float]] = {}
    for number, trial in enumerate(data["trials"], 1):
        utterance, ratings = _check_trial(path, number, trial)
        if utterance in trials:
            raise DataError(f"{path}: trial {number}: utterance {utterance!r} rated twice")
        trials[utterance] = ratings
    return {
        "page_id": data["page_id"],
        "rater": data["rater"].strip(),
        "created": data["created"],
        "trials": trials,
    }


def t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """``(mean, half-width)`` of the Student-t confidence interval of the mean of ``values``;
    the half-width is 0 for constant values and NaN for fewer than two values."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    if std == 0.0:
        return mean, 0.0
    from scipy import stats

    return mean, float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)


def _screen(ratings: dict[str, Any]) -> str | None:
    """Why post-screening excludes a rater (None: kept)."""
    trials = ratings["trials"]
    missed = sum(r[REFERENCE] < SCREEN_SCORE for r in trials.values())
    if missed > SCREEN_SHARE * len(trials):
        return (
            f"rated the hidden reference below {SCREEN_SCORE:g} in {missed} of {len(trials)} "
            f"trials (more than {SCREEN_SHARE:.0%})"
        )
    return None


def _check_together(files: list[tuple[Path, dict[str, Any]]]) -> None:
    """The files rate one test: same page id, same utterances and systems, each rater once."""
    first_path, first = files[0]
    items = {(u, n) for u, r in first["trials"].items() for n in r}
    raters: dict[str, Path] = {}
    for path, data in files:
        if data["page_id"] != first["page_id"]:
            raise DataError(
                f"{path}: page id {data['page_id']}, but {first_path} has {first['page_id']} "
                "(ratings of another test)"
            )
        if {(u, n) for u, r in data["trials"].items() for n in r} != items:
            raise DataError(f"{path}: rates other utterances or systems than {first_path}")
        rater = data["rater"]
        if rater in raters:
            raise DataError(f"{path}: rater {rater!r} again (also in {raters[rater]})")
        raters[rater] = path


def score_ratings(paths: list[str | Path], *, post_screening: bool = True) -> dict[str, Any]:
    """Score the rating files of one listening test. Returns ``{"page_id", "kept": [rater],
    "excluded": {rater: reason}, "systems": {system: {"n", "mean", "ci_low", "ci_high"}}}``
    with the hidden reference first and the others by mean, best first."""
    if not paths:
        raise DataError("no rating files given")
    files = [(Path(p), read_ratings(p)) for p in paths]
    _check_together(files)
    excluded = {}
    if post_screening:
        excluded = {d["rater"]: why for _, d in files if (why := _screen(d)) is not None}
    kept = [d for _, d in files if d["rater"] not in excluded]
    names = list(next(iter(files[0][1]["trials"].values())))
    systems = {}
    for name in names:
        values = [r[name] for d in kept for r in d["trials"].values()]
        mean, half = t_interval(values)
        systems[name] = {"n": len(values), "mean": mean, "ci_low": mean - half}
        systems[name]["ci_high"] = mean + half

    def rank(name: str) -> tuple[int, float]:
        mean = systems[name]["mean"]
        return (name != REFERENCE, -mean if not math.isnan(mean) else math.inf)

    return {
        "page_id": files[0][1]["page_id"],
        "kept": [d["rater"] for d in kept],
        "excluded": excluded,
        "systems": {name: systems[name] for name in sorted(systems, key=rank)},
    }


def _cell(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def ratings_table(result: dict[str, Any]) -> str:
    """The result of :func:`score_ratings` in Markdown: one row per system, then the raters
    kept and those post-screening excluded, with the reason."""
    lines = [
        f"Listening test {result['page_id']} (MUSHRA scale 0-100; 95 % CI: Student t over "
        "all ratings of the kept raters)",
        "",
        "| system | ratings | mean | 95 % CI low | 95 % CI high |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, s in result["systems"].items():
        label = f"{name} (hidden)" if name == REFERENCE else name
        cells = [str(s["n"]), _cell(s["mean"]), _cell(s["ci_low"]), _cell(s["ci_high"])]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    kept = result["kept"]
    lines += ["", f"Raters kept: {len(kept)} ({', '.join(kept) or 'none'})."]
    excluded = result["excluded"]
    if excluded:
        lines.append(f"Excluded by post-screening (ITU-R BS.1534): {len(excluded)}.")
        lines += [f"- {rater}: {why}" for rater, why in excluded.items()]
    return "\n".join(lines) + "\n"
