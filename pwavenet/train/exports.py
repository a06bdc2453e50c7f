"""Inference exports of a training run, made by one code path: the export that training
refreshes at every checkpoint (``RUN/export``), the one at ``train.max_steps``, and
``pwavenet export RUN --step N`` from any intact checkpoint.

What an export of a run is (its kind, constructor arguments, resolved config and provenance:
the teacher's path and sha256 for a student, the speakers' names) is an :class:`ExportRecipe`,
made once when the run starts and written into every checkpoint as ``export.json`` and
``config.yaml``, so that any checkpoint can be exported later without the feature cache or the
teacher. Exports hold the EMA weights when the run has EMA, else the model's weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ..config import Config, load_config, save_config
from ..errors import TrainingError
from ..fileio import read_json, write_json
from ..models.export import KINDS, load_state_strict, save_export
from .checkpoints import checkpoint_step, find_checkpoint

__all__ = ["RECIPE", "ExportRecipe", "checkpoint_weights", "export_checkpoint"]

RECIPE, RECIPE_FORMAT = "export.json", "pwavenet-export-recipe/1"


@dataclass
class ExportRecipe:
    """What makes an inference export of a run's model: ``kind`` (``"teacher"`` or
    ``"student"``), the model's constructor arguments, the resolved config, and ``extra``
    (provenance, recorded in the export's ``model.json`` with the step count)."""

    kind: str
    model_args: dict[str, Any]
    cfg: Config
    extra: dict[str, Any] = field(default_factory=dict)

    def export(self, model: nn.Module, path: str | Path, steps: int) -> Path:
        """Write ``model`` (the weights to export) as the export folder ``path``, atomically."""
        return save_export(
            model,
            path,
            kind=self.kind,
            model_args=self.model_args,
            cfg=self.cfg,
            extra={"steps": steps, **self.extra},
        )

    def write_into(self, folder: Path) -> None:
        """Record the recipe in a checkpoint folder (``export.json`` and ``config.yaml``)."""
        record = {"kind": self.kind, "model_args": self.model_args, "extra": self.extra}
        write_json(folder / RECIPE, {"format": RECIPE_FORMAT, **record})
        save_config(self.cfg, folder / "config.yaml")

    @classmethod
    def read(cls, folder: Path) -> ExportRecipe:
        """The recipe recorded in a checkpoint folder by :meth:`write_into`."""
        if not (folder / RECIPE).is_file():
            raise TrainingError(
                f"{folder}: no {RECIPE} (a checkpoint written by an older pwavenet); "
                "export a newer checkpoint"
            )
        data = read_json(folder / RECIPE, RECIPE_FORMAT, TrainingError, "export recipe")
        if data.get("kind") not in KINDS or not isinstance(data.get("model_args"), dict):
            raise TrainingError(f"{folder / RECIPE}: invalid export recipe")
        cfg = load_config(folder / "config.yaml")
        return cls(data["kind"], data["model_args"], cfg, dict(data.get("extra") or {}))


def checkpoint_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The weights to export from a checkpoint folder: the EMA weights when it has them, else
    the model's (without the prefixes that distributed or compiled wrappers add)."""
    name = "ema.safetensors" if (folder / "ema.safetensors").is_file() else "model.safetensors"
    try:
        state = load_file(str(folder / name))
    except (OSError, SafetensorError) as exc:
        cause = str(exc).splitlines()[0]
        raise TrainingError(f"{folder / name}: unreadable weights ({cause})") from None
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "_orig_mod."):
            key = key.removeprefix(prefix)
        out[key] = value
    return out


def export_checkpoint(
    run_dir: str | Path, *, step: int | None = None, out: str | Path | None = None
) -> Path:
    """Export the intact checkpoint of ``step`` of a teacher or student run (default: the
    newest intact one) to ``out`` (default ``RUN/export-step-N``), atomically; returns ``out``.
    A missing or damaged checkpoint is refused with a one-line :class:`TrainingError`."""
    run_dir = Path(run_dir)
    folder = find_checkpoint(run_dir, step)
    recipe = ExportRecipe.read(folder)
    try:
        model = KINDS[recipe.kind](**recipe.model_args)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"{folder / RECIPE}: invalid {recipe.kind} arguments ({exc})") from None
    load_state_strict(model, checkpoint_weights(folder), str(folder))
    steps = checkpoint_step(folder)
    target = Path(out) if out is not None else run_dir / f"export-step-{steps}"
    return recipe.export(model, target, steps)
