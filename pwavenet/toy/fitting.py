"""Fitting a flow three ways: maximum likelihood (forward KL, from samples), reverse KL (from a
log density only) and probability density distillation from a frozen teacher flow."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor

from .base import FlowModel

__all__ = [
    "Progress",
    "distill",
    "fit_maximum_likelihood",
    "fit_reverse_kl",
    "one_thread",
    "reverse_kl",
]

Progress = Callable[[Iterable[int], str], Iterable[int]]


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
