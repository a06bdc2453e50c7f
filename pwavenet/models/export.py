"""Inference exports: safetensors weights + a JSON description, loadable without training code.

An export folder holds::

    model.safetensors   the weights (EMA weights when the run used EMA)
    model.json          {"format", "kind", "model_args", "audio", "extra"}
    config.yaml         the resolved config of the run that made it

Nothing here unpickles: weights are safetensors and metadata is JSON.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import AudioConfig, Config, config_to_dict, save_config
from ..errors import PwavenetError
from ..fileio import read_json, write_json

__all__ = [
    "ExportError",
    "export_kind",
    "load_export",
    "load_student",
    "load_teacher",
    "save_export",
]

FORMAT = "pwavenet-export/1"
WEIGHTS, META = "model.safetensors", "model.json"


class ExportError(PwavenetError):
    """An export folder is missing, damaged, of the wrong kind or for another architecture."""


def save_export(
    model: nn.Module,
    path: str | Path,
    *,
    kind: str,
    model_args: dict[str, Any],
    cfg: Config,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write an export folder atomically (built under a temporary name, then renamed)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / WEIGHTS))
    write_json(
        tmp / META,
        {
            "format": FORMAT,
            "kind": kind,
            "model_args": model_args,
            "audio": config_to_dict(cfg.audio),
            "extra": extra or {},
        },
    )
    save_config(cfg, tmp / "config.yaml")
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


def load_export(path: str | Path, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read an export of the given ``kind``: ``(state_dict, meta)``."""
    path = Path(path)
    if not path.is_dir():
        raise ExportError(f"{path}: no such export folder")
    meta_file = path / META
    if not meta_file.is_file():
        raise ExportError(f"{path}: not a pwavenet export (no {META})")
    meta = read_json(meta_file, FORMAT, ExportError, "export description")
    if meta.get("kind") != kind:
        raise ExportError(f"{path}: is a {meta.get('kind')} export, not a {kind}")
    try:
        state = load_file(str(path / WEIGHTS))
    except (OSError, SafetensorError) as exc:
        raise ExportError(f"{path / WEIGHTS}: unreadable weights ({exc})") from None
    return state, meta


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """``load_state_dict`` with a one-line error naming what does not fit."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensors (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        if shapes:
            k = shapes[0]
            parts.append(
                f"shape of {k} is {tuple(state[k].shape)}, model has {tuple(own[k].shape)}"
            )
        raise ExportError(f"{where}: weights made for another architecture: {'; '.join(parts)}")
    model.load_state_dict(state)


def _load_model(path: str | Path, kind: str, cls: type, device: str | torch.device) -> Any:
    """An eval-mode ``cls`` built and filled from an export of ``kind``, with ``.audio`` and
    ``.export_extra`` (the export's ``extra`` record) attached."""
    state, meta = load_export(path, kind)
    try:
        model = cls(**meta["model_args"])
    except (TypeError, ValueError) as exc:
        raise ExportError(f"{path}: invalid {kind} description ({exc})") from None
    load_state_strict(model, state, str(path))
    model.audio = AudioConfig(**meta["audio"])
    model.export_extra = meta.get("extra", {})
    return model.to(device).eval()


def load_teacher(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """Load a teacher export as an eval-mode :class:`~pwavenet.models.teacher.WaveNet`.

    The returned model has ``.audio`` (:class:`AudioConfig`) attached: the feature settings its
    mel input must be made with.
    """
    from .teacher import WaveNet

    return _load_model(path, "teacher", WaveNet, device)


def load_student(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """Load a student export as an eval-mode :class:`~pwavenet.models.student.Student`.

    Like :func:`load_teacher`, the model has ``.audio`` attached; ``.teacher`` holds the path
    and sha256 of the teacher export it was distilled from.
    """
    from .student import Student

    model = _load_model(path, "student", Student, device)
    extra = model.export_extra
    model.teacher = {"path": extra.get("teacher"), "sha256": extra.get("teacher_sha256")}
    return model


def export_kind(path: str | Path) -> str:
    """``"teacher"`` or ``"student"``: what an export folder holds."""
    path = Path(path)
    if not (path / META).is_file():
        raise ExportError(f"{path}: not a pwavenet export (no {META})")
    kind = read_json(path / META, FORMAT, ExportError, "export description").get("kind")
    if kind not in ("teacher", "student"):
        raise ExportError(f"{path}: unknown export kind {kind!r}")
    return kind
