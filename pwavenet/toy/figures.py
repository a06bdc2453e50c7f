"""The toy ladder's figures: density and sample panels of every model on every target, and the
seeds' MADE-versus-MAF diagnostic (training data mapped to noise)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["diagnostic_figure", "grid_figure"]


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
def grid_figure(
    figure_data: dict[str, Any], names: Sequence[str], *, pixels: int, scatter: int, seed: int
) -> Any:
    """Rows: each target's density on a ``pixels x pixels`` image, then ``scatter`` of its samples;
    columns: the target and every model of ``names``. ``figure_data`` maps each target's name
    to ``(target, training data, {model name: trained FlowModel})``."""
    fig, axes = _figure(2 * len(figure_data), 1 + len(names), 2.0)
    for r, (target, _, trained) in enumerate(figure_data.values()):
        e = target.extent
        xs = torch.linspace(e[0], e[1], pixels)
        ys = torch.linspace(e[2], e[3], pixels)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
        g = torch.Generator().manual_seed(seed)
        panels = [("target", target.log_density, target.sample)]
        panels += [(n, trained[n].log_prob, trained[n].sample) for n in names]
        for c, (title, log_density, sample) in enumerate(panels):
            density = log_density(grid).exp().reshape(pixels, pixels)
            axes[2 * r, c].imshow(density.numpy(), extent=e, origin="lower", aspect="auto")
            _style(axes[2 * r, c], e, f"{target.name}: {title}" if c == 0 else title)
            points = sample(scatter, g).numpy()
            axes[2 * r + 1, c].scatter(points[:, 0], points[:, 1], s=1, alpha=0.4, lw=0)
            _style(axes[2 * r + 1, c], e, "samples")
    return fig


@torch.no_grad()
def diagnostic_figure(
    figure_data: dict[str, Any], result: dict[str, Any], *, teacher: str, scatter: int
) -> Any:
    """The seeds' diagnostic: ``scatter`` training points mapped to noise by a single MADE and by
    the ``teacher`` (the MAF), against circles of radius 1, 2 and 3 of the standard Gaussian
    base; each panel's title quotes the model's KS distance from ``result``."""
    fig, axes = _figure(len(figure_data), 2, 3.0)
    fig.suptitle("training data mapped to noise, u = f⁻¹(x); circles: radius 1, 2, 3", fontsize=9)
    for r, (shape, (target, train, trained)) in enumerate(figure_data.items()):
        for c, name in enumerate(("MADE", teacher)):
            u = trained[name].flow.inverse(train[:scatter])[0].numpy()
            ax = axes[r, c]
            ax.scatter(u[:, 0], u[:, 1], s=1, alpha=0.5, lw=0)
            for radius in (1, 2, 3):
                circle = torch.linspace(0, 2 * math.pi, 200)
                ax.plot(radius * circle.cos(), radius * circle.sin(), lw=0.5, color="gray")
            ks = result["shapes"][shape]["models"][name]["ks"]
            ax.set_aspect("equal")
            _style(ax, (-4.5, 4.5, -4.5, 4.5), f"{target.name}: {name} u (KS {ks:.3f})")
    return fig
