"""The seeds' flows on 2-D toy densities, and the 2-D twin of probability density distillation.

Three normalised targets with exact samples: seed 002's density
``p(x1, x2) = N(x2 | 0, 2^2) N(x1 | x2^2 / 4, 1)`` ("banana"), two moons and a ring of eight
Gaussians (both written as equal-weight Gaussian mixtures, so their log densities are analytic).
On each, :func:`run_toy2d` fits

- by maximum likelihood (forward KL, from samples): a single MADE (one MAF layer), a 5-layer
  MAF, Real NVP and NICE;
- by reverse KL (from the log density only, which may be unnormalised): an IAF and a planar
  stack;
- by distillation: an IAF student trained on ``KL(student || MAF)`` by Monte Carlo, the way the
  audio student learns from the WaveNet teacher. Its base is Gaussian (ClariNet's choice): the
  untrained student is its base, and a logistic base's heavier tails land where the MAF
  extrapolates to vanishing densities (log densities of -1e12 were measured), which makes the
  KL before distillation astronomically large.

It writes a figure grid (``toy2d.png``), the seeds' MADE-versus-MAF diagnostic (training data
mapped to noise, ``toy2d_diagnostic.png``) and one table (``toy2d.md``, ``toy2d.json``):
held-out log-likelihood, both KLs to the target, the Kolmogorov-Smirnov distance of the mapped
data to the base, and wall times to sample and to score 100,000 points.

``pwavenet toy2d --out DIR [--quick] [--seed S]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import PwavenetError
from ..fileio import atomic_path, write_json
from .autoregressive import autoregressive_flow
from .base import FlowModel
from .coupling import additive_couplings, affine_couplings
from .figures import diagnostic_figure, grid_figure
from .fitting import (
    Progress,
    distill,
    fit_maximum_likelihood,
    fit_reverse_kl,
    one_thread,
    reverse_kl,
)
from .planar import planar_flow
from .targets import SHAPES, Target, make_target

logger = logging.getLogger(__name__)

__all__ = [
    "FULL",
    "MODELS",
    "QUICK",
    "TEACHER",
    "Toy2dConfig",
    "Toy2dError",
    "format_table",
    "ks_distance",
    "run_toy2d",
]


class Toy2dError(PwavenetError):
    """The output folder cannot be used."""


@dataclasses.dataclass(frozen=True)
class Toy2dConfig:
    """Sizes of one run (the defaults are the full size; :data:`QUICK` is the CI size)."""

    train_samples: int = 20_000  # maximum-likelihood training set (and the KS diagnostic's)
    test_samples: int = 20_000  # held-out samples for the log-likelihood and KL(target || model)
    kl_samples: int = 20_000  # model samples for KL(model || target)
    steps: int = 1_000  # optimiser steps per model
    batch_size: int = 512
    lr: float = 5e-3  # Adam, cosine-decayed to zero
    hidden: tuple[int, ...] = (64, 64)
    autoregressive_layers: int = 5  # MAF, IAF and the student
    coupling_layers: int = 6  # Real NVP and NICE
    planar_layers: int = 16
    grid: int = 120  # density images are grid x grid
    scatter: int = 2_000  # points per sample panel
    timing_points: int = 100_000
    timing_repeats: int = 3  # wall times are the best of this many runs


FULL = Toy2dConfig()
QUICK = Toy2dConfig(
    train_samples=4_000,
    test_samples=4_000,
    kl_samples=4_000,
    steps=250,
    hidden=(32, 32),
    planar_layers=8,
    grid=60,
    scatter=1_000,
    timing_repeats=1,
)


# ----------------------------------------------------------------------------- metrics


def ks_distance(u: Tensor, cdf: Callable[[Tensor], Tensor]) -> Tensor:
    """Kolmogorov-Smirnov distance, per dimension, between the empirical distribution of
    ``u: (N, D)`` and a continuous ``cdf`` applied elementwise to ``(N, D)``: ``(D,)``. Under the
    null hypothesis its 95 % quantile is about ``1.36 / sqrt(N)``."""
    n = u.shape[0]
    f = cdf(u.sort(dim=0).values)
    i = torch.arange(1, n + 1, dtype=f.dtype)[:, None]
    return torch.maximum((i / n - f).amax(0), (f - (i - 1) / n).amax(0))


def _wall(fn: Callable[[], Any], repeats: int) -> float:
    """Seconds that one call of ``fn`` takes: the best of ``repeats``."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@torch.no_grad()
def _evaluate(
    model: FlowModel,
    target: Target,
    train: Tensor,
    test: Tensor,
    timing: Tensor,
    cfg: Toy2dConfig,
    seed: int,
) -> dict[str, float]:
    """Held-out log-likelihood, both KLs, the KS distance of ``train`` mapped to noise, and wall
    times to sample and score ``cfg.timing_points`` points."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    log_q = model.log_prob(test)
    u = model.flow.inverse(train)[0]
    cdf = model.base.distribution().cdf
    model.sample(16, g)  # warm-up for the timings
    model.log_prob(timing[:16])
    return {
        "test_log_likelihood": float(log_q.mean()),
        "kl_target_model": float((target.log_density(test) - log_q).mean()),
        "kl_model_target": float(reverse_kl(model, target.log_density, cfg.kl_samples, g)),
        "ks": float(ks_distance(u, cdf).max()),
        "sample_seconds": _wall(lambda: model.sample(cfg.timing_points, g), cfg.timing_repeats),
        "density_seconds": _wall(lambda: model.log_prob(timing), cfg.timing_repeats),
    }


# ----------------------------------------------------------------------------- the run


@dataclasses.dataclass(frozen=True)
class _Spec:
    name: str
    fit: str  # "max likelihood", "reverse KL" or "distilled"
    build: Callable[[Toy2dConfig], FlowModel]


MODELS = (
    _Spec(
        "MADE",
        "max likelihood",
        lambda c: autoregressive_flow("maf", features=2, layers=1, hidden=c.hidden),
    ),
    _Spec(
        "MAF",
        "max likelihood",
        lambda c: autoregressive_flow(
            "maf", features=2, layers=c.autoregressive_layers, hidden=c.hidden
        ),
    ),
    _Spec(
        "Real NVP",
        "max likelihood",
        lambda c: affine_couplings(features=2, layers=c.coupling_layers, hidden=c.hidden),
    ),
    _Spec(
        "NICE",
        "max likelihood",
        lambda c: additive_couplings(features=2, layers=c.coupling_layers, hidden=c.hidden),
    ),
    _Spec(
        "IAF",
        "reverse KL",
        lambda c: autoregressive_flow(
            "iaf", features=2, layers=c.autoregressive_layers, hidden=c.hidden
        ),
    ),
    _Spec("planar", "reverse KL", lambda c: planar_flow(features=2, layers=c.planar_layers)),
    _Spec(
        "IAF student",
        "distilled",
        lambda c: autoregressive_flow(
            "iaf", features=2, layers=c.autoregressive_layers, hidden=c.hidden
        ),
    ),
)
TEACHER = "MAF"


def _subseed(seed: int, *path: int) -> int:
    """A seed for one part of a run (a target's data, one model), distinct for every path."""
    digest = hashlib.sha256(repr((seed, *path)).encode()).digest()
    return int.from_bytes(digest[:7], "big")


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's global generator (parameter initialisation) inside the block only."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _fit(
    spec: _Spec,
    model: FlowModel,
    target: Target,
    train: Tensor,
    trained: dict[str, FlowModel],
    cfg: Toy2dConfig,
    seed: int,
    progress: Progress | None,
) -> dict[str, float]:
    """Train ``model`` as ``spec`` says; distillation's KL before and after, else nothing."""
    common = {"steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": seed}
    desc = f"{target.name} {spec.name}"
    if spec.fit == "max likelihood":
        fit_maximum_likelihood(model, train, progress=progress, desc=desc, **common)
    elif spec.fit == "reverse KL":
        fit_reverse_kl(model, target.log_density, progress=progress, desc=desc, **common)
    else:
        teacher = trained[TEACHER]
        return distill(
            model, teacher, eval_samples=cfg.kl_samples, progress=progress, desc=desc, **common
        )
    return {}


def _prepare_out(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise Toy2dError(f"{out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Toy2dError(f"{out}: cannot create the output folder ({exc.strerror})") from None
    return out


def run_toy2d(
    out_dir: str | Path,
    *,
    quick: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Fit every model to every target, write the figures and the table into ``out_dir``, and
    return the results (what ``toy2d.json`` holds). ``quick`` is the reduced CI size;
    ``progress(range(steps), description)`` may wrap each training loop (e.g. in tqdm).
    Deterministic for a given ``seed`` (apart from wall times)."""
    out = _prepare_out(out_dir)
    with one_thread():
        return _run(out, QUICK if quick else FULL, seed, quick, progress)


def _run(
    out: Path, cfg: Toy2dConfig, seed: int, quick: bool, progress: Progress | None
) -> dict[str, Any]:
    started = time.perf_counter()
    shapes: dict[str, Any] = {}
    figure_data: dict[str, Any] = {}
    for s, name in enumerate(SHAPES):
        target = make_target(name)
        g = torch.Generator().manual_seed(_subseed(seed, s))
        train, test = target.sample(cfg.train_samples, g), target.sample(cfg.test_samples, g)
        timing = target.sample(cfg.timing_points, g)
        rows = {"true density": {"test_log_likelihood": float(target.log_density(test).mean())}}
        trained: dict[str, FlowModel] = {}
        for m, spec in enumerate(MODELS):
            model_seed = _subseed(seed, s, m)
            with _seeded(model_seed):
                model = spec.build(cfg)
            tick = time.perf_counter()
            extra = _fit(spec, model, target, train, trained, cfg, model_seed, progress)
            train_seconds = time.perf_counter() - tick
            metrics = _evaluate(model, target, train, test, timing, cfg, model_seed)
            rows[spec.name] = {"fit": spec.fit, **metrics, **extra, "train_seconds": train_seconds}
            trained[spec.name] = model
            logger.info("%s %s: %s", name, spec.name, rows[spec.name])
        shapes[name] = {"title": target.title, "models": rows}
        figure_data[name] = (target, train, trained)
    result = {
        "format": "pwavenet-toy2d",
        "seed": seed,
        "quick": quick,
        "config": dataclasses.asdict(cfg),
        "shapes": shapes,
        "seconds": time.perf_counter() - started,
    }
    _write_outputs(out, result, figure_data, cfg, seed)
    return result


def _write_outputs(
    out: Path, result: dict[str, Any], figure_data: dict[str, Any], cfg: Toy2dConfig, seed: int
) -> None:
    names = [spec.name for spec in MODELS]
    grid = grid_figure(figure_data, names, pixels=cfg.grid, scatter=cfg.scatter, seed=seed)
    with atomic_path(out / "toy2d.png") as tmp:
        grid.savefig(tmp, format="png")
    diagnostic = diagnostic_figure(figure_data, result, teacher=TEACHER, scatter=cfg.scatter)
    with atomic_path(out / "toy2d_diagnostic.png") as tmp:
        diagnostic.savefig(tmp, format="png")
    with atomic_path(out / "toy2d.md") as tmp:
        tmp.write_text(format_table(result), encoding="utf-8")
    write_json(out / "toy2d.json", result)


# ----------------------------------------------------------------------------- report


_COLUMNS = {
    "test_log_likelihood": ("test LL", "{:.3f}"),
    "kl_target_model": ("KL(target‖model)", "{:.3f}"),
    "kl_model_target": ("KL(model‖target)", "{:.3f}"),
    "ks": ("KS(u)", "{:.3f}"),
    "train_seconds": ("train s", "{:.1f}"),
    "sample_seconds": ("sample 100k s", "{:.3f}"),
    "density_seconds": ("density 100k s", "{:.3f}"),
}


def format_table(result: dict[str, Any]) -> str:
    """The results of :func:`run_toy2d` as one Markdown table (one row per target and model),
    followed by the distillation's KL to the teacher before and after."""
    lines = [
        "| target | model | fit | " + " | ".join(h for h, _ in _COLUMNS.values()) + " |",
        "| --- | --- | --- |" + " ---: |" * len(_COLUMNS),
    ]
    notes = []
    for shape, entry in result["shapes"].items():
        for name, row in entry["models"].items():
            cells = [f.format(row[k]) if k in row else "" for k, (_, f) in _COLUMNS.items()]
            lines.append(f"| {shape} | {name} | {row.get('fit', '')} | " + " | ".join(cells) + " |")
            if "kl_teacher_before" in row:
                notes.append(
                    f"- {shape}: KL({name}‖{TEACHER}) {row['kl_teacher_before']:.4g} before "
                    f"distillation, {row['kl_teacher_after']:.4g} after"
                )
    n = result["config"]["train_samples"]
    notes.append(
        f"- KS(u): largest per-dimension Kolmogorov-Smirnov distance between the {n} training "
        f"points mapped to noise and the base (95 % critical value {1.36 / math.sqrt(n):.3f})"
    )
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"
