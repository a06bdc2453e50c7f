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
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import PwavenetError
from ..fileio import atomic_path, write_json
from ..models.distributions import Gaussian
from .flows import (
    FlowModel,
    additive_couplings,
    affine_couplings,
    autoregressive_flow,
    planar_flow,
)

logger = logging.getLogger(__name__)

__all__ = [
    "FULL",
    "QUICK",
    "Banana",
    "GaussianMixture",
    "Toy2dConfig",
    "Toy2dError",
    "distill",
    "fit_maximum_likelihood",
    "fit_reverse_kl",
    "format_table",
    "ks_distance",
    "make_target",
    "one_thread",
    "reverse_kl",
    "run_toy2d",
]

Progress = Callable[[Iterable[int], str], Iterable[int]]
SHAPES = ("banana", "moons", "ring")


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


# ----------------------------------------------------------------------------- targets


class Banana:
    """Seed 002's density ``N(x2 | 0, 4) N(x1 | x2^2 / 4, 1)`` (variance 4: std 2), normalised."""

    name, title = "banana", "seed 002: N(x2|0,4) N(x1|x2²/4,1)"
    extent = (-4.0, 12.0, -7.0, 7.0)  # x1 from, to; x2 from, to

    def log_density(self, x: Tensor) -> Tensor:
        """``x: (B, 2) -> (B,)``."""
        x1, x2 = x.unbind(-1)
        zero = torch.zeros_like(x1)
        log_p2 = Gaussian(zero, zero + math.log(2.0)).log_prob(x2)
        return log_p2 + Gaussian(x2 * x2 / 4.0, zero).log_prob(x1)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``(n, 2)`` exact draws."""
        g = torch.randn(n, 2, generator=generator)
        x2 = 2.0 * g[:, 1]
        return torch.stack([x2 * x2 / 4.0 + g[:, 0], x2], dim=-1)


class GaussianMixture:
    """Equal-weight mixture of isotropic Gaussians with ``means: (K, 2)`` and one ``std``."""

    def __init__(
        self, name: str, title: str, means: Tensor, std: float, extent: tuple[float, ...]
    ) -> None:
        self.name, self.title, self.means, self.std, self.extent = name, title, means, std, extent

    def log_density(self, x: Tensor) -> Tensor:
        """``x: (B, 2) -> (B,)``, normalised."""
        d2 = (x[:, None, :] - self.means.to(x.dtype)).pow(2).sum(-1)  # (B, K)
        log_k = -0.5 * d2 / self.std**2 - math.log(2.0 * math.pi * self.std**2)
        return torch.logsumexp(log_k, dim=-1) - math.log(self.means.shape[0])

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``(n, 2)`` exact draws."""
        k = torch.randint(self.means.shape[0], (n,), generator=generator)
        return self.means[k] + self.std * torch.randn(n, 2, generator=generator)


def make_target(name: str) -> Banana | GaussianMixture:
    """``"banana"``, ``"moons"`` or ``"ring"``.

    The moons are the usual two half circles (radius 1, the lower one shifted by (1, -0.5)),
    centred and scaled by 2, as 128 Gaussians of std 0.2 evenly spaced along each arc (spacing
    0.05: indistinguishable from noise around a continuous arc). The ring has 8 Gaussians of
    std 0.4 on a circle of radius 3.
    """
    if name == "banana":
        return Banana()
    if name == "moons":
        t = (torch.arange(128) + 0.5) * math.pi / 128
        upper = torch.stack([t.cos(), t.sin()], -1)
        lower = torch.stack([1.0 - t.cos(), 0.5 - t.sin()], -1)
        means = 2.0 * (torch.cat([upper, lower]) - torch.tensor([0.5, 0.25]))
        return GaussianMixture("moons", "two moons", means, 0.2, (-3.5, 3.5, -2.5, 2.5))
    if name == "ring":
        t = torch.arange(8) * (2.0 * math.pi / 8)
        means = 3.0 * torch.stack([t.cos(), t.sin()], -1)
        return GaussianMixture("ring", "ring of 8 Gaussians", means, 0.4, (-4.5, 4.5, -4.5, 4.5))
    raise ValueError(f"unknown target {name!r}; expected one of {', '.join(SHAPES)}")


# ----------------------------------------------------------------------------- training


def _steps(steps: int, progress: Progress | None, desc: str) -> Iterable[int]:
    return progress(range(steps), desc) if progress is not None else range(steps)


def _optimise(
    model: FlowModel,
    loss_fn: Callable[[torch.Generator], Tensor],
    *,
    steps: int,
    lr: float,
    seed: int,
    progress: Progress | None,
    desc: str,
) -> list[float]:
    """Adam on ``loss_fn(generator)`` with a cosine learning rate and gradient clipping; the
    per-step losses."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    g = torch.Generator().manual_seed(seed)
    losses = []
    with one_thread():
        for _ in _steps(steps, progress, desc):
            loss = loss_fn(g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
    return losses


def fit_maximum_likelihood(
    model: FlowModel,
    data: Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    progress: Progress | None = None,
    desc: str = "max likelihood",
) -> list[float]:
    """Minimise the forward KL, ``-mean log q(x)`` over minibatches of ``data: (N, D)``; returns
    the per-step losses (nats)."""

    def loss(g: torch.Generator) -> Tensor:
        batch = data[torch.randint(data.shape[0], (batch_size,), generator=g)]
        return -model.log_prob(batch).mean()

    return _optimise(model, loss, steps=steps, lr=lr, seed=seed, progress=progress, desc=desc)


def reverse_kl(
    model: FlowModel, log_density: Callable[[Tensor], Tensor], n: int, generator: torch.Generator
) -> Tensor:
    """Monte Carlo ``E_q[log q(x) - log p(x)]`` over ``n`` reparameterised samples of the model:
    differentiable; equal to ``KL(q || p)`` when ``log_density`` is normalised, otherwise off by
    its log normaliser."""
    x, log_q = model.rsample_with_log_prob(n, generator)
    return (log_q - log_density(x)).mean()


def fit_reverse_kl(
    model: FlowModel,
    log_density: Callable[[Tensor], Tensor],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    progress: Progress | None = None,
    desc: str = "reverse KL",
) -> list[float]:
    """Minimise ``KL(model || p)`` given only ``log_density: (B, D) -> (B,)`` (unnormalised is
    fine): samples and their scores come from the model's forward pass, so an IAF trains
    without its slow inverse. Returns the per-step estimates."""

    def loss(g: torch.Generator) -> Tensor:
        return reverse_kl(model, log_density, batch_size, g)

    return _optimise(model, loss, steps=steps, lr=lr, seed=seed, progress=progress, desc=desc)


def distill(
    student: FlowModel,
    teacher: FlowModel,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    eval_samples: int = 20_000,
    progress: Progress | None = None,
    desc: str = "distill",
) -> dict[str, float]:
    """Probability density distillation in 2-D: the student samples and scores itself in one
    pass, the frozen teacher scores the samples in one pass (a MAF's fast direction), and the
    gradient of ``KL(student || teacher)`` reaches the student through the teacher's input.
    Returns the KL before and after (``eval_samples`` draws from a fixed generator)."""
    teacher.eval().requires_grad_(False)

    def kl_now() -> float:
        with torch.no_grad():
            g = torch.Generator().manual_seed(seed + 1)
            return float(reverse_kl(student, teacher.log_prob, eval_samples, g))

    before = kl_now()
    fit_reverse_kl(
        student,
        teacher.log_prob,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        progress=progress,
        desc=desc,
    )
    return {"kl_teacher_before": before, "kl_teacher_after": kl_now()}


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
    target: Banana | GaussianMixture,
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


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch limited to one intra-op thread inside the block. These models are far too small to
    split: on a 2-core CPU two threads made training steps up to 5x slower whenever the other
    core was busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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
    target: Banana | GaussianMixture,
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
    with atomic_path(out / "toy2d.png") as tmp:
        _grid_figure(figure_data, cfg, seed).savefig(tmp, format="png")
    with atomic_path(out / "toy2d_diagnostic.png") as tmp:
        _diagnostic_figure(figure_data, result, cfg).savefig(tmp, format="png")
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


def _figure(rows: int, cols: int, size: float) -> tuple[Any, Any]:
    """A matplotlib figure and its axes grid, without pyplot (no global backend state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size * cols, size * rows), dpi=80, layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def _style(ax: Any, extent: Sequence[float], title: str = "") -> None:
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


@torch.no_grad()
def _grid_figure(figure_data: dict[str, Any], cfg: Toy2dConfig, seed: int) -> Any:
    """Rows: each target's density, then its samples; columns: the target and every model."""
    names = [spec.name for spec in MODELS]
    fig, axes = _figure(2 * len(figure_data), 1 + len(names), 2.0)
    for r, (target, _, trained) in enumerate(figure_data.values()):
        e = target.extent
        xs = torch.linspace(e[0], e[1], cfg.grid)
        ys = torch.linspace(e[2], e[3], cfg.grid)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
        g = torch.Generator().manual_seed(seed)
        panels = [("target", target.log_density, target.sample)]
        panels += [(n, trained[n].log_prob, trained[n].sample) for n in names]
        for c, (title, log_density, sample) in enumerate(panels):
            density = log_density(grid).exp().reshape(cfg.grid, cfg.grid)
            axes[2 * r, c].imshow(density.numpy(), extent=e, origin="lower", aspect="auto")
            _style(axes[2 * r, c], e, f"{target.name}: {title}" if c == 0 else title)
            points = sample(cfg.scatter, g).numpy()
            axes[2 * r + 1, c].scatter(points[:, 0], points[:, 1], s=1, alpha=0.4, lw=0)
            _style(axes[2 * r + 1, c], e, "samples")
    return fig


@torch.no_grad()
def _diagnostic_figure(
    figure_data: dict[str, Any], result: dict[str, Any], cfg: Toy2dConfig
) -> Any:
    """The seeds' diagnostic: training data mapped to noise by a single MADE and by the MAF,
    against circles of radius 1, 2 and 3 of the standard Gaussian base."""
    fig, axes = _figure(len(figure_data), 2, 3.0)
    fig.suptitle("training data mapped to noise, u = f⁻¹(x); circles: radius 1, 2, 3", fontsize=9)
    for r, (shape, (target, train, trained)) in enumerate(figure_data.items()):
        for c, name in enumerate(("MADE", TEACHER)):
            u = trained[name].flow.inverse(train[: cfg.scatter])[0].numpy()
            ax = axes[r, c]
            ax.scatter(u[:, 0], u[:, 1], s=1, alpha=0.5, lw=0)
            for radius in (1, 2, 3):
                circle = torch.linspace(0, 2 * math.pi, 200)
                ax.plot(radius * circle.cos(), radius * circle.sin(), lw=0.5, color="gray")
            ks = result["shapes"][shape]["models"][name]["ks"]
            ax.set_aspect("equal")
            _style(ax, (-4.5, 4.5, -4.5, 4.5), f"{target.name}: {name} u (KS {ks:.3f})")
    return fig
