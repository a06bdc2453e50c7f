"""Which precision inference runs in, and why (docs/serving.md, "Precision").

The student's flows can run their matrix products in bfloat16: under a bf16 autocast
:meth:`~pwavenet.models.student.IAFFlow.params_time_major` casts its weights and residual stream
to bf16, while the sample, the flow scales ``exp(log_s)`` and their composition stay float32
(:meth:`~pwavenet.models.student.Student.transform_inference`). That pays only on hardware with
bf16 matrix units; elsewhere the products are emulated and slower than float32. ``auto``
therefore picks bf16 for the student only where such units exist (on the CPU: AMX-BF16 or
AVX512-BF16 in the CPU flags) and the flows do enough matrix work per sample for the halved
bytes to pay for the casts and the bf16 element-wise work (:data:`BF16_MIN_MFLOP`; measured in
docs/serving.md: the paper's student, 4.7 MFLOP per sample, runs 1.57x faster in bf16 on an
AVX512-BF16 CPU, a 0.28 MFLOP one 0.75x), and float32 everywhere else (on CUDA too, until bf16
there is measured: ask for it with ``bfloat16``). The teacher's cached generation is float32
only: at batch 1 it is a chain of matrix-vector products, and torch's bf16 matrix-vector
product at these sizes is slower on the CPU than numpy's float32 one (measured in
docs/serving.md).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError

__all__ = [
    "BF16_MIN_MFLOP",
    "DTYPES",
    "Precision",
    "bf16_units",
    "choose_precision",
    "flows_mflop",
    "precision_for",
]

DTYPES = ("auto", "float32", "bfloat16")
"""The values of ``--dtype``."""

BF16_MIN_MFLOP = 0.4
"""The flows' matrix work per sample (MFLOP) from which ``auto`` picks bf16 on a CPU with bf16
units: below it the measured bf16 path was slower (docs/serving.md, "Precision")."""

# CPU flags (as Linux names them in /proc/cpuinfo) of bf16 matrix units, best first.
_CPU_BF16_FLAGS = (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"))


@dataclass(frozen=True)
class Precision:
    """The dtype inference runs in and a one-line reason (printed by ``synthesize``)."""

    dtype: torch.dtype
    reason: str

    @property
    def name(self) -> str:
        """``"float32"`` or ``"bfloat16"``."""
        return str(self.dtype).removeprefix("torch.")


def bf16_units(device: torch.device | str = "cpu") -> str | None:
    """The bf16 matrix units of ``device``, by name (``"AMX-BF16"``, ``"AVX512-BF16"``,
    ``"CUDA"``), or ``None`` where bf16 products would be emulated."""
    device = torch.device(device)
    if device.type == "cuda":
        return "CUDA" if torch.cuda.is_bf16_supported() else None
    if device.type != "cpu":
        return None
    flags = _cpu_flags()
    return next((name for flag, name in _CPU_BF16_FLAGS if flag in flags), None)


@functools.cache
def _cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The first CPU's flags from ``/proc/cpuinfo`` (empty where there is none: not Linux)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def flows_mflop(model: torch.nn.Module) -> float:
    """Multiply-adds x 2 per output sample of every 1-D convolution of ``model`` (for a
    student: its flows), in MFLOP."""
    return 1e-6 * sum(
        2 * m.in_channels * m.out_channels * m.kernel_size[0]
        for m in model.modules()
        if isinstance(m, torch.nn.Conv1d)
    )


def choose_precision(
    requested: str, kind: str, device: torch.device | str, mflop: float = math.inf
) -> Precision:
    """The precision a ``kind`` (``"student"`` or ``"teacher"``) model runs in on ``device``
    for ``--dtype requested`` (one of :data:`DTYPES`); ``mflop``: the student's
    :func:`flows_mflop`. Raises :class:`~pwavenet.errors.ConfigError` for an unknown value or a
    bf16 teacher."""
    if requested not in DTYPES:
        raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {requested!r}")
    device = torch.device(device)
    if kind != "student":
        if requested == "bfloat16":
            raise ConfigError(
                f"the {kind}'s cached generation runs in float32 only (--dtype bfloat16 is for "
                "the student); use --dtype float32 or auto"
            )
        return Precision(torch.float32, f"the {kind} generates in float32")
    units = bf16_units(device)
    if requested == "float32":
        return Precision(torch.float32, "float32 as asked (--dtype float32)")
    if requested == "bfloat16":
        where = f"on {units}" if units else f"emulated: this {device.type} has no bf16 units"
        return Precision(torch.bfloat16, f"flows' matrix products in bfloat16 as asked ({where})")
    if units is None:
        return Precision(torch.float32, f"float32: this {device.type} has no bf16 matrix units")
    if device.type != "cpu":
        return Precision(torch.float32, "float32 (bf16 on CUDA is not measured yet: ask for it)")
    if mflop < BF16_MIN_MFLOP:
        return Precision(
            torch.float32,
            f"float32: this student's {mflop:.1f} MFLOP per sample are too few for bf16 to pay "
            f"on {units} (from {BF16_MIN_MFLOP:g})",
        )
    return Precision(
        torch.bfloat16, f"flows' matrix products in bfloat16 on {units} (scales in float32)"
    )


def precision_for(requested: str, model: torch.nn.Module, device: torch.device | str) -> Precision:
    """:func:`choose_precision` for a loaded vocoder (its ``kind`` and, for a student, its
    :func:`flows_mflop`)."""
    kind = getattr(model, "kind", "student")
    return choose_precision(requested, kind, device, flows_mflop(model))
