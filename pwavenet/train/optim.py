"""The optimisation pieces of the training loop: the learning-rate schedule, the clipping
threshold and Polyak (EMA) averaging of the weights."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn

from ..config import OptimConfig

__all__ = ["EMA", "clip_threshold", "lr_lambda"]


def lr_lambda(cfg: OptimConfig, max_steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at each step: linear warm-up, then the schedule."""

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        span = max(max_steps - cfg.warmup_steps, 1)
        progress = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
        if cfg.schedule == "cosine":
            return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (
                1 + math.cos(math.pi * progress)
            )
        return cfg.min_lr_ratio**progress  # exponential decay to min_lr_ratio

    return factor


class EMA:
    """Polyak averaging of a model's floating-point parameters and buffers."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].lerp_(v.detach(), 1.0 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, model: nn.Module) -> nn.Module:
        """A deep copy of ``model`` holding the averaged weights."""
        out = copy.deepcopy(model)
        out.load_state_dict(self.shadow)
        return out


def clip_threshold(cfg: OptimConfig) -> float:
    """Clipping threshold; 0 disables clipping (an infinite threshold still reports the norm)."""
    return cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
