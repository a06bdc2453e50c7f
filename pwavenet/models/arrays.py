"""The arrays single-step computation runs on: numpy on the CPU, tensors elsewhere.

A generated sample is a few hundred small array calls; a numpy call costs a fraction of a
microsecond and a torch call one to two, so on the CPU the step maths runs on numpy arrays, and
on CUDA on tensors. It is written once with the functions both provide (:func:`array_module`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from types import ModuleType
from typing import TypeVar

import numpy as np
import torch

__all__ = [
    "Array",
    "array_module",
    "step_array_like",
    "step_threads",
    "to_array",
    "zeros",
]

Array = TypeVar("Array", torch.Tensor, np.ndarray)


def step_array_like(t: torch.Tensor) -> torch.Tensor | np.ndarray:
    """What single-step generation computes with: numpy on the CPU (a numpy call costs a
    fraction of a microsecond, a torch call one to two, and a generated sample is a few hundred
    small calls), torch elsewhere. Returns an empty array of that kind and dtype."""
    if t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64):
        return np.empty(0, dtype=np.float32 if t.dtype == torch.float32 else np.float64)
    return t.new_empty(0)


def step_threads(like: torch.Tensor | np.ndarray) -> AbstractContextManager:
    """A context for a step loop on ``like``'s kind of arrays: numpy's BLAS limited to one thread.
    Its matmuls are too small to split (measured on a 2-core CPU, one thread was faster at batch 1
    and 8; two threads stalled for milliseconds per step whenever the other core was busy). Uses
    threadpoolctl when it is installed (it comes with librosa); otherwise changes nothing."""
    if not isinstance(like, np.ndarray):
        return nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with librosa
        return nullcontext()
    return threadpool_limits(1, user_api="blas")


def array_module(x: torch.Tensor | np.ndarray) -> ModuleType:
    """``numpy`` for numpy arrays, ``torch`` for tensors: the step maths is written once with
    the functions both provide (``matmul``, ``tanh``, ``multiply``, ``add``, ``maximum``,
    ``exp``, all with ``out=``)."""
    return np if isinstance(x, np.ndarray) else torch


def zeros(like: Array, shape: tuple[int, ...]) -> Array:
    """Zeros of the kind, dtype (and device) of ``like``."""
    if isinstance(like, np.ndarray):
        return np.zeros(shape, dtype=like.dtype)
    return like.new_zeros(shape)


def to_array(t: torch.Tensor, like: Array) -> Array:
    """A fresh contiguous copy of ``t`` of the kind of ``like`` (floats take its dtype)."""
    t = t.detach()
    if isinstance(like, np.ndarray):
        a = t.cpu().numpy()
        return np.array(a, dtype=like.dtype if a.dtype.kind == "f" else a.dtype, order="C")
    dtype = like.dtype if t.is_floating_point() else t.dtype
    return t.to(like.device, dtype, copy=True).contiguous()
