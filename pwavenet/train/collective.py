"""What the processes of a run compute together: logged training metrics averaged over the
processes, and validation sharded across them.

Training metrics are reduced only at logged steps, in one collective of all their values.
Validation gives process ``r`` of ``N`` the batches ``r, r + N, r + 2N, ...``; each batch's
metrics come back as ``(sum, weight)`` pairs (:data:`Totals`), added over the batches and then
over the processes, so the result is the one-process value up to float rounding whatever the
number of processes (a task that draws random numbers seeds them from the batch's index).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["Totals", "mean_over_processes", "shard", "validate"]

Totals = dict[str, tuple[float, float]]
"""Per metric a ``(sum, weight)`` pair; the metric is the total sum over the total weight."""


def mean_over_processes(
    accelerator: Accelerator, metrics: dict[str, float], same: Iterable[str] = ()
) -> dict[str, float]:
    """``metrics`` averaged over the processes in one collective; every process must call this
    at the same steps with the same names. Names in ``same`` (equal on every process) are kept
    as they are."""
    skip = set(same)
    names = sorted(k for k in metrics if k not in skip)
    if accelerator.num_processes == 1 or not names:
        return dict(metrics)
    values = torch.tensor(
        [metrics[k] for k in names], dtype=torch.float64, device=accelerator.device
    )
    means = accelerator.reduce(values, "mean").tolist()
    return {**metrics, **dict(zip(names, means, strict=True))}


def shard(loader: Iterable[Any], rank: int, processes: int) -> Iterator[tuple[int, Any]]:
    """Process ``rank``'s share of ``loader``'s batches with their indices in the whole: the
    batches ``rank, rank + processes, ...``. A map-style DataLoader is sliced at its batch
    sampler, so a process does not even load the other processes' batches."""
    if (
        processes > 1
        and isinstance(loader, DataLoader)
        and loader.batch_sampler is not None
        and not isinstance(loader.dataset, IterableDataset)
    ):
        mine = DataLoader(
            loader.dataset,
            batch_sampler=list(loader.batch_sampler)[rank::processes],
            collate_fn=loader.collate_fn,
            num_workers=loader.num_workers,
            pin_memory=loader.pin_memory,
        )
        return zip(itertools.count(rank, processes), mine)
    return itertools.islice(enumerate(loader), rank, None, processes)


def validate(
    totals_of: Callable[[nn.Module, Any, int], Totals],
    model: nn.Module,
    loader: Iterable[Any],
    accelerator: Accelerator | None = None,
) -> dict[str, float]:
    """Validation metrics of ``model``: ``totals_of(model, batch, index)`` on this process's
    :func:`shard` of ``loader`` (all of it without ``accelerator``), added over the batches
    and over the processes. Every process must call this; a metric of weight 0 is left out."""
    rank, processes = 0, 1
    if accelerator is not None:
        rank, processes = accelerator.process_index, accelerator.num_processes
    sums: Totals = {}
    for index, batch in shard(loader, rank, processes):
        for name, (value, weight) in totals_of(model, batch, index).items():
            old_value, old_weight = sums.get(name, (0.0, 0.0))
            sums[name] = (old_value + value, old_weight + weight)
    if accelerator is not None and processes > 1:
        sums = _sum_over_processes(accelerator, sums)
    return {name: value / weight for name, (value, weight) in sums.items() if weight > 0}


def _sum_over_processes(accelerator: Accelerator, sums: Totals) -> Totals:
    """``sums`` added over the processes; a process may lack names others have (it validated
    no batch that has them), so the names are gathered first."""
    from accelerate.utils import gather_object

    names = sorted(set(gather_object(sorted(sums))))
    pairs = [sums.get(name, (0.0, 0.0)) for name in names]
    flat = torch.tensor(pairs, dtype=torch.float64, device=accelerator.device).reshape(-1, 2)
    total = accelerator.reduce(flat, "sum").tolist()
    return {name: (value, weight) for name, (value, weight) in zip(names, total, strict=True)}
