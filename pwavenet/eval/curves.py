"""Training curves: read a run's ``log.jsonl`` and plot its metrics.

``read_log(run)`` gives ``{metric: [(step, value), ...]}`` from ``RUN/log.jsonl`` (train metrics
such as ``nll/bits`` and validation metrics such as ``valid/nll/bits``). ``plot_curves`` draws
one panel per metric, the training and the ``valid/`` series of the same metric on the same
axes, for one or several runs. matplotlib is imported only when plotting (Agg, no display).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from ..errors import DataError
from ..fileio import atomic_path

logger = logging.getLogger(__name__)

__all__ = ["LOG_NAME", "default_keys", "plot_curves", "read_log"]

LOG_NAME = "log.jsonl"
VALID = "valid/"
NOT_LOSSES = (
    "lr",
    "grad/norm",
    "monitor_seconds",
    "train_minutes",
)  # logged, but not the model's quality


def _log_path(run_dir: str | Path) -> Path:
    path = Path(run_dir)
    return path if path.is_file() else path / LOG_NAME


def read_log(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``{metric: [(step, value), ...]}`` sorted by step, from ``run_dir/log.jsonl`` (or the log
    file itself).

    An interrupted run may leave a truncated last line (skipped silently) and, once resumed, a
    damaged line in the middle and steps logged twice: damaged lines are skipped with a warning
    and a step logged again keeps its newest value. Non-numeric values are ignored. A missing,
    unreadable or empty log raises :class:`~pwavenet.errors.DataError` naming the file.
    """
    path = _log_path(run_dir)
    if not path.is_file():
        raise DataError(f"{path}: no training log here")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable training log ({exc})") from None
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    series: dict[str, dict[int, float]] = {}
    for n, line in numbered:
        try:
            row = json.loads(line)
            step = int(row["step"])
        except (ValueError, KeyError, TypeError):
            if n == numbered[-1][0]:
                logger.debug("%s:%d: truncated last line skipped", path, n)
            else:
                logger.warning("%s:%d: damaged line skipped", path, n)
            continue
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(key, {})[step] = float(value)
    if not series:
        raise DataError(f"{path}: no metrics logged yet")
    return {key: sorted(points.items()) for key, points in series.items()}


def default_keys(logs: dict[str, dict[str, list[tuple[int, float]]]]) -> list[str]:
    """The metrics worth a panel: every logged metric (``valid/`` merged with its training
    twin) except the learning rate and the gradient norm, in order of first appearance."""
    keys: list[str] = []
    for log in logs.values():
        for key in log:
            base = key.removeprefix(VALID)
            if base not in NOT_LOSSES and base not in keys:
                keys.append(base)
    return keys


def _log_scale(values: list[float]) -> bool:
    """Log axes for positive series spanning more than a factor of 30."""
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 30


def plot_curves(runs: dict[str, Path], out_png: Path, keys: list[str] | None = None) -> Path:
    """Plot the curves of ``runs`` (``{label: run folder}``) into the PNG ``out_png``.

    One panel per metric of ``keys`` (default: :func:`default_keys`); each run's training
    series is a solid line and its ``valid/`` series a dashed line with markers in the same
    colour. A ``keys`` entry may be given with or without the ``valid/`` prefix. A key no run
    logged raises :class:`~pwavenet.errors.DataError`. The file is written atomically.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not runs:
        raise DataError(f"{out_png}: no runs to plot")
    logs = {label: read_log(path) for label, path in runs.items()}
    wanted = [k.removeprefix(VALID) for k in keys] if keys else default_keys(logs)
    logged = {k.removeprefix(VALID) for log in logs.values() for k in log}
    missing = [k for k in wanted if k not in logged]
    if missing:
        names = ", ".join(sorted(logged))
        where = ", ".join(str(_log_path(path)) for path in runs.values())
        raise DataError(f"{where}: no run logged '{missing[0]}' (logged: {names})")
    if not wanted:
        raise DataError(f"{out_png}: nothing to plot (only {', '.join(NOT_LOSSES)} logged)")

    cols = min(3, len(wanted))
    rows = math.ceil(len(wanted) / cols)
    fig = Figure(figsize=(5.0 * cols, 3.4 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    colours = [f"C{i % 10}" for i in range(len(logs))]
    for i, key in enumerate(wanted):
        ax = fig.add_subplot(rows, cols, i + 1)
        values: list[float] = []
        for colour, (label, log) in zip(colours, logs.items(), strict=True):
            for name, style in ((key, {"linestyle": "-"}), (VALID + key, {"linestyle": "--"})):
                points = log.get(name)
                if not points:
                    continue
                steps, ys = zip(*points, strict=True)
                values += ys
                suffix = " valid" if name.startswith(VALID) else ""
                marker = "o" if suffix else None
                ax.plot(
                    steps,
                    ys,
                    color=colour,
                    marker=marker,
                    markersize=3,
                    label=label + suffix,
                    **style,
                )
        if _log_scale(values):
            ax.set_yscale("log")
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return out_png
