"""What a trained model is: kind, config, parameter counts, receptive field, teacher record.

``describe(path)`` accepts an export folder (``RUN/export``) or a run folder. A run folder is
described through its export when it has one; a run that has not finished yet (no export, only
checkpoints) is described from its ``config.yaml``, the model rebuilt with fresh weights (the
counts and receptive fields do not depend on the weights). ``format_description`` turns the
dictionary into plain text (``tools/inspect_export.py`` prints it).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from torch import nn

from ..config import Config, config_to_dict, load_config, read_yaml
from ..models.export import META, WEIGHTS, ExportError, load_vocoder

__all__ = ["describe", "format_description", "parameter_counts"]

# The config sections that describe each kind of model.
SECTIONS = {"teacher": ("audio", "teacher"), "student": ("audio", "student", "distill")}


def parameter_counts(model: nn.Module) -> dict[str, Any]:
    """``{"total": n, "modules": {child: n, ...}}``: parameters in all and per top-level
    submodule (parameters held by the model itself, if any, under ``"(own)"``)."""
    modules = {
        name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()
    }
    own = sum(p.numel() for p in model.parameters(recurse=False))
    if own:
        modules["(own)"] = own
    return {"total": sum(p.numel() for p in model.parameters()), "modules": modules}


def _receptive_field(model: nn.Module, kind: str, sample_rate: int) -> dict[str, Any]:
    """Teacher: ``{"samples", "ms"}``. Student: the same for ``model.lookback`` (what ``x_t``
    may depend on), plus ``"flows"``: one ``{"layers", "samples", "ms"}`` per flow."""

    def ms(samples: int) -> float:
        return 1000.0 * samples / sample_rate

    if kind == "teacher":
        field = model.receptive_field
        return {"samples": field, "ms": ms(field)}
    flows = [
        {"layers": len(f.dilations), "samples": f.receptive_field, "ms": ms(f.receptive_field)}
        for f in model.flows
    ]
    return {"samples": model.lookback, "ms": ms(model.lookback), "flows": flows}


def _teacher_record(path: str | None, recorded: str | None) -> dict[str, Any]:
    """The teacher a student was distilled from: the recorded path and sha256, the sha256 of
    the weights at that path now, and ``status``: matches, differs, missing or not recorded."""
    from ..train.distill import file_sha256

    out: dict[str, Any] = {"path": path, "sha256": recorded, "current_sha256": None}
    weights = Path(path) / WEIGHTS if path else None
    if weights is not None and weights.is_file():
        out["current_sha256"] = file_sha256(weights)
    if not path:
        out["status"] = "not recorded"
    elif out["current_sha256"] is None:
        out["status"] = "missing"
    elif recorded is None:
        out["status"] = "not recorded"
    else:
        out["status"] = "matches" if out["current_sha256"] == recorded else "differs"
    return out


def _sections(cfg: Config, kind: str) -> dict[str, Any]:
    full = config_to_dict(cfg)
    return {name: full[name] for name in SECTIONS[kind]}


def _describe_export(path: Path) -> dict[str, Any]:
    model = load_vocoder(path)
    kind, extra = model.kind, model.provenance
    # The export's resolved config, read as plain YAML: an export made by an older version
    # may hold keys that this version no longer knows, and is still worth describing.
    config = path / "config.yaml"
    raw = read_yaml(config) if config.is_file() else {}
    sections = {name: raw[name] for name in SECTIONS[kind] if isinstance(raw.get(name), dict)}
    out: dict[str, Any] = {
        "path": str(path),
        "source": "export",
        "kind": kind,
        "steps": extra.get("steps"),
        "config": sections or {"audio": vars(model.audio)},
        "parameters": parameter_counts(model),
        "receptive_field": _receptive_field(model, kind, model.audio.sample_rate),
    }
    if kind == "student":
        out["teacher"] = _teacher_record(extra.get("teacher"), extra.get("teacher_sha256"))
    return out


def _checkpoint_kind(checkpoint: Path, cfg: Config) -> str:
    """Which model a training checkpoint holds: from its weight names when they can be read
    (a student has ``flows.*``), else from the config (a student run names its teacher)."""
    weights = checkpoint / "model.safetensors"
    if weights.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(weights), framework="pt") as f:
                names = list(f.keys())
            return "student" if any(n.startswith("flows.") for n in names) else "teacher"
        except (OSError, RuntimeError, ValueError):
            pass
    return "student" if cfg.distill.teacher else "teacher"


def _describe_run(run: Path, checkpoint: Path) -> dict[str, Any]:
    config = run / "config.yaml"
    if not config.is_file():
        raise ExportError(f"{run}: a run folder without an export or a config.yaml")
    cfg = load_config(config)
    kind = _checkpoint_kind(checkpoint, cfg)
    if kind == "teacher":
        from ..train.teacher import build_teacher

        model: nn.Module = build_teacher(cfg)
    else:
        from ..train.distill import build_student

        model = build_student(cfg, log_scale_init=0.0)
    try:
        steps = json.loads((checkpoint / "trainer.json").read_text(encoding="utf-8"))["step"]
    except (OSError, ValueError, KeyError, TypeError):
        steps = None
    out: dict[str, Any] = {
        "path": str(run),
        "source": f"checkpoint {checkpoint.name} (no export yet)",
        "kind": kind,
        "steps": steps,
        "config": _sections(cfg, kind),
        "parameters": parameter_counts(model),
        "receptive_field": _receptive_field(model, kind, cfg.audio.sample_rate),
    }
    if kind == "student":
        teacher = cfg.distill.teacher
        out["teacher"] = _teacher_record(str(Path(teacher).resolve()) if teacher else None, None)
    return out


def describe(path: str | Path) -> dict[str, Any]:
    """Describe an export folder or a run folder (see the module docstring).

    Returns ``{"path", "source", "kind", "steps", "config", "parameters": {"total",
    "modules"}, "receptive_field": {"samples", "ms"[, "flows"]}[, "teacher": {"path",
    "sha256", "current_sha256", "status"}]}``. A folder with neither an export nor a checkpoint
    raises :class:`~pwavenet.models.export.ExportError` naming it.
    """
    from ..train.trainer import latest_checkpoint

    path = Path(path)
    if not path.is_dir():
        raise ExportError(f"{path}: no such folder")
    if (path / META).is_file():
        return _describe_export(path)
    if (path / "export" / META).is_file():
        out = _describe_export(path / "export")
        out["run"] = str(path)
        return out
    checkpoint = latest_checkpoint(path)
    if checkpoint is not None:
        return _describe_run(path, checkpoint)
    raise ExportError(f"{path}: no pwavenet export here (no {META}, export/ or checkpoints/)")


# --------------------------------------------------------------------------- text


def _wrap(label: str, items: dict[str, Any], indent: str = "  ") -> list[str]:
    body = ", ".join(f"{k}={v}" for k, v in items.items())
    return textwrap.wrap(
        f"{label}: {body}",
        width=100,
        initial_indent=indent,
        subsequent_indent=indent + "    ",
        break_on_hyphens=False,
    )


def format_description(d: dict[str, Any]) -> str:
    """Plain-text form of :func:`describe`'s dictionary."""
    steps = f", {d['steps']} steps" if d.get("steps") is not None else ""
    lines = [f"{d['path']}: {d['kind']} ({d['source']}{steps})"]
    if d.get("run"):
        lines.append(f"  run: {d['run']}")
    lines.append("  config:")
    for name, section in d["config"].items():
        lines += _wrap(name, section, indent="    ")
    params = d["parameters"]
    lines.append(f"  parameters: {params['total']:,}")
    width = max((len(n) for n in params["modules"]), default=0)
    for name, count in params["modules"].items():
        share = 100.0 * count / max(params["total"], 1)
        lines.append(f"    {name:<{width}}  {count:>12,}  ({share:.1f} %)")
    field = d["receptive_field"]
    if "flows" in field:
        flows = ", ".join(f"{f['samples']} ({f['layers']} layers)" for f in field["flows"])
        lines.append(
            f"  receptive field: lookback {field['samples']:,} samples ({field['ms']:.1f} ms); "
            f"per flow: {flows}"
        )
    else:
        lines.append(f"  receptive field: {field['samples']:,} samples ({field['ms']:.1f} ms)")
    teacher = d.get("teacher")
    if teacher is not None:
        lines.append(f"  teacher: {teacher['path']}")
        recorded = teacher["sha256"] or "not recorded"
        lines.append(f"    recorded sha256: {recorded}")
        status = {
            "matches": "the weights there match the record",
            "differs": f"the weights there DIFFER (sha256 {teacher['current_sha256']})",
            "missing": f"no {WEIGHTS} there any more",
            "not recorded": "nothing to compare (no recorded sha256)",
        }[teacher["status"]]
        lines.append(f"    now: {status}")
    return "\n".join(lines) + "\n"
