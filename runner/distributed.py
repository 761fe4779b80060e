"""Data-parallel training of one run on several processes (torch.distributed, started by torchrun).

``torchrun --nproc_per_node=N -m runner.cli run task=... hydra.run.dir=DIR`` starts N copies of the
run; each reads its rank and the world size from torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). Every rank builds the same task from the same seed
and draws the same global batch from the step's generator; :meth:`runner.task.Task.shard` keeps its
own share, the loop averages the gradients over the ranks (:func:`average_gradients`) before the
optimiser step, so every rank takes the same step, and only rank 0 logs, writes checkpoints,
metrics.json and artifacts. Backend: NCCL when each rank has a GPU, else gloo (CPU).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from runner.record import RunRecord


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a data-parallel run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> DistInfo:
    """Rank and world size from torchrun's environment variables; a single process without them."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def init_process_group(info: DistInfo, device: torch.device) -> None:
    """Join the process group of a run with ``info.world_size > 1`` (no-op for a single process)."""
    if info.world_size <= 1 or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(params: Iterable[Tensor], world_size: int) -> None:
    """All-reduce the gradients of ``params`` in place to their mean over the ranks (one flat buffer).

    Parameters without a gradient on this step count as zero gradients, so that every rank sends a
    buffer of the same size.
    """
    params = list(params)
    if world_size <= 1 or not params:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def check_data_parallel(task, optimizer: torch.optim.Optimizer, info: DistInfo) -> None:
    """Raise a ConfigError when this run cannot be data-parallel; then tell the task its rank."""
    from runner.errors import ConfigError

    if info.world_size <= 1:
        return
    if not task.data_parallel:
        raise ConfigError(
            f"task {type(task).__name__} does not support data-parallel runs (it does not shard its batch); "
            "run it in one process (without torchrun)"
        )
    if isinstance(optimizer, torch.optim.LBFGS):
        raise ConfigError("optim=lbfgs cannot run data-parallel (its closure re-evaluates the loss); use adam or sgd")
    task.rank, task.world_size = info.rank, info.world_size


class RankRecord(RunRecord):
    """metrics.json of a rank other than 0: kept in memory, never written (rank 0 writes the run's)."""

    def update(self, **fields) -> None:
        self.data.update(fields)
