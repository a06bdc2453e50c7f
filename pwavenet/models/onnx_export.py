"""The student as an ONNX graph: mel and base noise in, audio out (``pwavenet export-onnx``).

The graph is the convolution layout that training uses (the upsampler, then every
:meth:`~pwavenet.models.student.IAFFlow.forward`), not the time-major inference path, traced by
torch's ``torch.export``-based exporter (``torch.onnx.export(..., dynamo=True)``, which needs
``onnx`` and ``onnxscript``) with a dynamic batch and frame count::

    mel (B, C, F) float32, z (B, F * hop) float32  ->  audio (B, F * hop) float32

``C`` is ``n_mels`` (+ 2 log-F0 and voicing rows for a pitch-informed student); ``z`` is the
base noise :meth:`~pwavenet.models.student.Student.noise` draws, and the output is
``Student.synthesize(mel, noise=z)``. Refused: students with a sine excitation (its phase is
accumulated in float64 over the utterance), with speakers, or trained on a pre-emphasised signal
(their output is de-emphasised by a recursive filter after the flows). The graph's metadata
records the feature settings its mel must be made with.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import config_to_dict
from ..errors import PwavenetError
from ..fileio import atomic_path
from .export import load_student
from .student import Student

__all__ = [
    "ONNX_FORMAT",
    "OnnxExportError",
    "StudentGraph",
    "export_onnx",
    "export_student_onnx",
    "onnx_session",
]

ONNX_FORMAT = "pwavenet-onnx/1"
OPSET = 18
# Frames of the example input the graph is traced with: any length runs afterwards. Batch 2 and
# a few frames keep torch.export from specialising either dimension to 0 or 1.
EXAMPLE_BATCH, EXAMPLE_FRAMES = 2, 8


class OnnxExportError(PwavenetError):
    """A student cannot be exported to ONNX: the packages are missing or it has a part the
    graph does not hold."""


class StudentGraph(nn.Module):
    """What the ONNX graph computes: ``forward(mel (B, C, F), z (B, F * hop)) -> (B, F * hop)``,
    the flows in the convolution layout over the upsampled mel (``transform(z, cond).x``)."""

    def __init__(self, student: Student) -> None:
        super().__init__()
        self.student = student

    def forward(self, mel: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        cond = self.student.upsampler(mel)
        x = z
        for flow in self.student.flows:
            x, _ = flow(x, cond)
        return x


def require_onnx() -> None:
    """Raise a one-line :class:`OnnxExportError` unless the exporter's packages import."""
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise OnnxExportError(
            f"ONNX export needs {' and '.join(missing)}: pip install 'pwavenet[onnx]'"
        )


def check_exportable(student: Student, where: str) -> None:
    """Refuse, in one line, a student whose synthesis the graph would not reproduce."""
    if student.excitation is not None:
        raise OnnxExportError(
            f"{where}: a student with a sine excitation cannot be exported to ONNX "
            "(its phase is accumulated in float64 over the utterance)"
        )
    if student.speaker is not None:
        raise OnnxExportError(f"{where}: a student with speakers cannot be exported to ONNX")
    if student.audio is not None and student.audio.preemphasis:
        raise OnnxExportError(
            f"{where}: a student trained on a pre-emphasised signal cannot be exported to ONNX "
            "(its output is de-emphasised by a recursive filter the graph does not hold)"
        )


def graph_metadata(student: Student) -> dict[str, str]:
    """The ONNX model's ``metadata_props``: what the inputs are and the feature settings."""
    meta: dict[str, Any] = {
        "format": ONNX_FORMAT,
        "kind": "student",
        "inputs": "mel (B, mel_rows, F), z (B, F * hop_length): base noise",
        "outputs": "audio (B, F * hop_length)",
        "base": student.base,
        "hop_length": student.hop_length,
        "mel_rows": student.upsampler.channels,
        "audio": config_to_dict(student.audio) if student.audio is not None else None,
    }
    return {f"pwavenet.{k}": json.dumps(v, sort_keys=True) for k, v in meta.items()}


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Keep the exporter's notices that say nothing about this graph off stderr: the
    torchvision operators it skips registering, its own deprecations, and that the two inputs
    share the batch axis."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec", category=FutureWarning)
            warnings.filterwarnings("ignore", message="# The axis name", category=UserWarning)
            yield
    finally:
        logger.setLevel(level)


def export_onnx(student: Student, path: str | Path, *, where: str = "student") -> Path:
    """Write ``student`` as an ONNX graph to ``path`` (atomically; nothing is written on an
    error): inputs ``mel (B, C, F)`` and ``z (B, F * hop)``, output ``audio (B, F * hop)``, batch
    and frames dynamic. ``where`` names the student in error messages."""
    require_onnx()
    check_exportable(student, where)
    import onnx

    path = Path(path)
    if path.is_dir():
        raise OnnxExportError(f"{path}: is a folder, not an .onnx file to write")
    dtype = next(student.parameters()).dtype
    hop, rows = student.hop_length, student.upsampler.channels
    mel = torch.zeros(EXAMPLE_BATCH, rows, EXAMPLE_FRAMES, dtype=dtype)
    z = torch.zeros(EXAMPLE_BATCH, EXAMPLE_FRAMES * hop, dtype=dtype)
    batch, frames = torch.export.Dim("batch"), torch.export.Dim("frames")
    dynamic = {"mel": {0: batch, 2: frames}, "z": {0: batch, 1: frames * hop}}
    graph = StudentGraph(student).eval()
    with torch.no_grad(), quiet_exporter():
        program = torch.onnx.export(
            graph,
            (mel, z),
            dynamo=True,
            dynamic_shapes=dynamic,
            input_names=["mel", "z"],
            output_names=["audio"],
            opset_version=OPSET,
            optimize=True,
            verbose=False,
        )
    model = program.model_proto
    for node in model.graph.node:  # source paths of this install: not part of the graph
        keep = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
    onnx.helper.set_model_props(model, graph_metadata(student))
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))
    return path


def export_student_onnx(model_dir: str | Path, path: str | Path) -> Path:
    """Load the student export ``model_dir`` (refusing any other kind in one line) and write it
    as an ONNX graph to ``path`` (:func:`export_onnx`)."""
    require_onnx()
    student = load_student(model_dir)
    return export_onnx(student, path, where=str(model_dir))


def onnx_session(path: str | Path, threads: int = 0) -> Any:
    """An onnxruntime CPU session for a graph of :func:`export_onnx` (``threads`` 0: the
    runtime's default); ``session.run(None, {"mel": mel, "z": z})[0]`` is the audio, numpy
    float32 in and out."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
