"""Data-parallel training of one run on several processes (torch.distributed, started by torchrun).

``torchrun --nproc_per_node=N --rdzv-endpoint=127.0.0.1:PORT -m runner.cli run task=... hydra.run.dir=DIR``
starts N copies of the run that meet on loopback (torchrun's static rendezvous). torchrun's store still
listens on PORT on every interface, and ``--standalone`` / ``--rdzv-backend=c10d`` unpickle what it holds:
see the README before running where others can reach the machine, and for several nodes
(``--nnodes/--node_rank`` with ``--rdzv-endpoint=HOST:PORT``, on a trusted network only). Each copy
reads its rank and the world size from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``). Every rank builds the same task from the same seed
and draws the same global batch from the step's generator; :meth:`runner.task.Task.shard` keeps its
own share, the loop averages the gradients over the ranks (:func:`average_gradients`) before the
optimiser step, so every rank takes the same step, and only rank 0 logs, writes checkpoints,
metrics.json and artifacts. Backend: NCCL when each rank has a GPU, else gloo (CPU).

This is dwx's stand-in for ``DistributedSampler``: rather than each rank reading its own part of a
shuffled epoch, every rank draws the whole global batch (indices, augmentation parameters, noise) from
the generator seeded by (seed, step) and keeps a contiguous slice of it. Batches then never depend on
history (resume stays exact) and N processes see exactly the samples and augmentations that one process
with the same global batch sees. Batch statistics that couple the samples of a batch must be global
too: :class:`GlobalBatchNorm2d` for BatchNorm, :meth:`runner.task.Task.sum_over_ranks` for
normalisers such as a mask's pixel count.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

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


def destroy_process_group(completed: bool) -> None:
    """Leave the process group. After a completed run every rank first waits for the others (a barrier), so
    that no rank closes its connections while another is still finishing its last writes: a rank that tore
    gloo down early was seen to abort at exit under load. A failed run leaves at once (a peer may be gone)."""
    if not dist.is_initialized():
        return
    if completed:
        dist.barrier()
    dist.destroy_process_group()


def average_gradients(
    params: Iterable[Tensor], world_size: int, terms: Tensor | None = None, loss_failed: bool = False
) -> tuple[int, Tensor | None]:
    """One all-reduce per step: the gradients of ``params`` to their mean over the ranks, in place.

    The same flat buffer carries, so that a step needs a single collective:

    * whether each parameter has a gradient on some rank: a parameter without a gradient on every rank
      keeps ``grad = None``, as in one process (the optimiser then skips it, weight decay included);
      one with a gradient on some ranks only counts zeros for the others;
    * ``terms``, this rank's detached loss terms, returned as their mean over the ranks (for logging:
      with equal shares of a global batch this is the loss of the global batch); every rank's
      ``loss()`` must return the same terms;
    * ``loss_failed``: whether this rank's loss was not finite (it then sends zero gradients). The count
      over the ranks is returned, so that every rank stops, or skips the step, together; a rank that
      left the all-reduce alone would leave the others waiting in it for ever.

    Returns:
        (number of ranks whose loss was not finite, mean of ``terms`` or None); (0, terms) in one process.
    """
    params = list(params)
    if world_size <= 1:
        return int(loss_failed), terms
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    has_grad = [float(p.grad is not None) for p in params]
    device = params[0].device if params else (terms.device if terms is not None else torch.device("cpu"))
    extra = torch.tensor([*has_grad, float(loss_failed)], device=device)
    parts = [g.reshape(-1) for g in grads] + [extra]
    if terms is not None:
        parts.append(terms.reshape(-1).to(device=device, dtype=extra.dtype))
    flat = torch.cat([part.to(extra.dtype) for part in parts])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = (flat[offset : offset + n] / world_size).view_as(p).to(p.dtype)
        offset += n
    flags = flat[offset : offset + len(params) + 1]
    for p, count in zip(params, flags[:-1].tolist()):
        if count == 0:
            p.grad = None
    offset += len(params) + 1
    mean_terms = None
    if terms is not None:
        mean_terms = (flat[offset:] / world_size).view_as(terms).to(terms.dtype)
    return int(round(flags[-1].item())), mean_terms


def sum_over_ranks(value: Tensor) -> Tensor:
    """The sum of a detached statistic over the ranks (the value itself in one process); no gradient."""
    value = value.detach()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def max_over_ranks(value: int) -> int:
    """The largest of an integer over the ranks (the value itself in one process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
        return value
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over the ranks: the gradient of each rank's input is the sum of the ranks'
    output gradients (each rank's loss depends on every rank's input through the sum)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics are those of the global batch in a data-parallel run.

    Per-rank statistics would normalise each rank's share by its own mean and variance, so that N
    processes no longer compute what one process with the same global batch computes. This module
    all-reduces the per-channel sum and the sum of squared deviations over the ranks, differentiably
    (the backward pass all-reduces their gradients: every rank's loss depends on every rank's input), so the
    forward pass, the gradients and the running statistics equal one process's on the global batch
    (up to float rounding).

    Why not ``torch.nn.SyncBatchNorm``: it raises for CPU tensors (PyTorch 2.13: "SyncBatchNorm expected
    input tensor to be on GPU"), so gloo runs on the CPU could not use it. This module runs on any device:
    on GPUs the same two all-reduces go through NCCL (two small collectives per layer and pass; torch's
    fused CUDA kernels would save little at these widths). In one process, in eval mode, and when
    torch.distributed is not initialised it is exactly ``nn.BatchNorm2d`` (same state dict, same kernels),
    so checkpoints load either way. Ranks must hold equal shares (:meth:`runner.task.Task.shard`).
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        self._check_input_dim(x)
        world_size = dist.get_world_size()
        count = x.numel() // x.shape[1] * world_size  # equal shares on every rank
        mean = all_reduce(x.sum((0, 2, 3))) / count
        centred = x - mean[None, :, None, None]
        var = all_reduce((centred * centred).sum((0, 2, 3))) / count  # biased, as BatchNorm normalises
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - factor).add_(factor * mean.detach())
                unbiased = var.detach() * count / max(count - 1, 1)
                self.running_var.mul_(1 - factor).add_(factor * unbiased)
        return y


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
    batch_size = getattr(task, "batch_size", None)  # the global batch of the learned tasks
    if isinstance(batch_size, int) and batch_size % info.world_size:
        raise ConfigError(
            f"task.batch_size={batch_size} (the global batch) does not split evenly over {info.world_size} "
            f"processes; make it a multiple of {info.world_size} or change --nproc_per_node"
        )
    task.rank, task.world_size = info.rank, info.world_size


class RankRecord(RunRecord):
    """metrics.json of a rank other than 0: kept in memory, never written (rank 0 writes the run's)."""

    def update(self, **fields) -> None:
        self.data.update(fields)
