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
from typing import Any, cast

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import AudioConfig, Config, config_to_dict, save_config
from ..errors import PwavenetError
from ..fileio import read_json, write_json
from .student import Student
from .teacher import WaveNet
from .vocoder import Vocoder

__all__ = [
    "FORMAT",
    "KINDS",
    "ExportError",
    "export_audio",
    "load_student",
    "load_teacher",
    "load_vocoder",
    "read_export",
    "save_export",
]

FORMAT = "pwavenet-export/1"
WEIGHTS, META = "model.safetensors", "model.json"
# The model class of each export kind (``model.json``'s ``kind``).
KINDS: dict[str, type[Vocoder]] = {cls.kind: cls for cls in (WaveNet, Student)}


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
    """Write an export folder atomically (built under a temporary name, then renamed over the
    previous export). A write that fails (a full disk) removes the temporary folder, leaves the
    previous export as it was and raises a one-line :class:`ExportError`."""
    path = Path(path)
    tmp, old = path.with_name(f".{path.name}.tmp"), path.with_name(f".{path.name}.old")
    if old.is_dir() and not path.exists():  # a crash between the two renames below
        old.rename(path)
    for stale in (tmp, old):
        if stale.exists():
            shutil.rmtree(stale)
    try:
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
    except (OSError, SafetensorError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ExportError(f"{path}: cannot write the export ({cause.splitlines()[0]})") from None
    if path.exists():  # the previous export is moved aside only once the new one is whole
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def _read_meta(path: Path) -> dict[str, Any]:
    """The checked ``model.json`` of an export folder."""
    if not path.is_dir():
        raise ExportError(f"{path}: no such export folder")
    if not (path / META).is_file():
        raise ExportError(f"{path}: not a pwavenet export (no {META})")
    return read_json(path / META, FORMAT, ExportError, "export description")


def export_audio(path: str | Path) -> AudioConfig:
    """The feature settings recorded in an export folder (its weights are not read)."""
    path = Path(path)
    try:
        return AudioConfig(**_read_meta(path)["audio"])
    except (KeyError, TypeError) as exc:
        raise ExportError(f"{path / META}: invalid feature settings ({exc})") from None


def read_export(
    path: str | Path, kind: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read an export (of the given ``kind``, or of any known kind): ``(state_dict, meta)``."""
    path = Path(path)
    meta = _read_meta(path)
    found = meta.get("kind")
    if found not in KINDS:
        raise ExportError(f"{path}: unknown export kind {found!r}")
    if kind is not None and found != kind:
        raise ExportError(f"{path}: is a {found} export, not a {kind}")
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


def load_vocoder(
    path: str | Path, device: str | torch.device = "cpu", *, kind: str | None = None
) -> Vocoder:
    """Load an export as an eval-mode :class:`~pwavenet.models.vocoder.Vocoder` of the kind it
    holds (refused unless it is ``kind``, when given), with its declared attributes set:
    ``audio`` (the feature settings its mel input must be made with) and ``provenance`` (the
    export's ``extra`` record)."""
    state, meta = read_export(path, kind)
    found = meta["kind"]
    try:
        model = KINDS[found](**meta["model_args"])
        audio = AudioConfig(**meta["audio"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"{path}: invalid {found} description ({exc})") from None
    load_state_strict(model, state, str(path))
    model.audio = audio
    model.provenance = dict(meta.get("extra") or {})
    return model.to(device).eval()


def load_teacher(path: str | Path, device: str | torch.device = "cpu") -> WaveNet:
    """Load a teacher export as an eval-mode :class:`~pwavenet.models.teacher.WaveNet`
    (:func:`load_vocoder` refusing any other kind)."""
    return cast(WaveNet, load_vocoder(path, device, kind="teacher"))


def load_student(path: str | Path, device: str | torch.device = "cpu") -> Student:
    """Load a student export as an eval-mode :class:`~pwavenet.models.student.Student`
    (:func:`load_vocoder` refusing any other kind); its ``teacher`` property reads the
    recorded path and sha256 of the teacher export it was distilled from."""
    return cast(Student, load_vocoder(path, device, kind="student"))
