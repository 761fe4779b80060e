"""The contract between the generic loop (:mod:`runner.loop`) and a task.

A task is an ``nn.Module``: its learnable tensors are parameters or submodules, so ``state_dict`` and
``to(device)`` come for free and the loop can checkpoint it without knowing what it holds. Ground
truth and data it does not learn belong in non-persistent buffers or plain attributes.

The loop calls, in order: ``setup(device)`` once, then for every step ``loss(step)``, and at the
configured cadences ``evaluate()``, ``visuals(logger, step)``; ``save(out_dir)`` at the end.
Batches must be drawn from a generator seeded by the step (see :meth:`Task.step_generator`), so that a
resumed run sees exactly the batches an uninterrupted one would. A task that sets ``data_parallel`` draws
the global batch that way and keeps its share with :meth:`Task.shard` (see :mod:`runner.distributed`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from runner.errors import ConfigError
from runner.logging import Logger


class Task(nn.Module, ABC):
    """Base class of every dwx task.

    Attributes:
        metric: name of the main metric in :meth:`evaluate`'s output (e.g. ``"abs_rel"``).
        mode: ``"min"`` or ``"max"``: which direction of ``metric`` is better.
        renders: the scene type it hands its ``renderer`` (runner.render.base: MESHES, POINTS, PRIMITIVES), or
            None for a task that takes no renderer; any renderer that draws it serves the task.
    """

    metric: str
    mode: Literal["min", "max"]
    renders: str | None = None
    data_parallel: bool = False  # True when loss() draws its batch through shard() (see runner.distributed)

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = int(seed)
        self.device = torch.device("cpu")
        self.rank, self.world_size = 0, 1  # set by the runner in a data-parallel run

    # ------------------------------------------------------------------ required
    @abstractmethod
    def param_groups(self) -> dict[str, list[Tensor]]:
        """Named groups of tensors to optimise, e.g. ``{"verts": [...], "pose": [...]}``.

        The optimiser config may give each group its own learning rate (``optim.groups.<name>.lr``).
        """

    @abstractmethod
    def loss(self, step: int) -> dict[str, Tensor]:
        """Weighted loss terms for one optimisation step; the loop sums them and logs ``loss/<term>``."""

    @abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Metrics against ground truth; must contain ``self.metric``. Called under ``torch.no_grad``."""

    # ------------------------------------------------------------------ optional hooks
    def setup(self, device: torch.device) -> None:
        """Build or load data and move everything to ``device``. Called once before the first step."""
        self.device = device
        self.to(device)

    def steps_per_epoch(self) -> int | None:
        """Number of steps in one pass over the training data, or None for tasks without a dataset."""
        return None

    def plan(self, total_steps: int) -> None:
        """Fit the task's own schedule to the run's length in steps (``loop.steps``, or ``loop.epochs`` x
        :meth:`steps_per_epoch`): fix phases given as fractions of the run, check those given in steps (raise
        :class:`~runner.errors.ConfigError`, or adapt and warn). Called by the loop before the first step."""

    def visuals(self, logger: Logger, step: int) -> None:
        """Log images, meshes or plots. Called under ``torch.no_grad`` at the image cadence."""

    def save(self, out_dir: Path) -> None:
        """Write artifacts (meshes, depth maps, parameters) in open formats into ``out_dir``."""

    def summary(self, metrics: dict[str, float]) -> str:
        """A one-line human summary of final metrics (the loop prints it at the end)."""
        main = metrics.get(self.metric)
        return f"{self.metric}={main:.4g}" if main is not None else ""

    # ------------------------------------------------------------------ helpers for subclasses
    def shard(self, batch: Tensor) -> Tensor:
        """This rank's contiguous share of a global batch (all of it in a single process).

        Draw the global batch (indices, snippets, augmentation parameters, noise, ...) with
        :meth:`step_generator` as usual, then take ``self.shard(batch)`` of each: with the loop averaging
        gradients over ranks, N processes then take the step one process takes on the whole batch. This
        replaces a ``DistributedSampler`` (see :mod:`runner.distributed`). A loss that is a mean over the
        samples of the share is then, averaged over the ranks, the mean over the global batch; a
        normaliser that couples samples (a count over the batch) needs :meth:`sum_over_ranks`.

        Raises:
            ConfigError: the batch does not split evenly over the processes.
        """
        if self.world_size == 1:
            return batch
        if len(batch) % self.world_size:
            raise ConfigError(
                f"a global batch of {len(batch)} does not split evenly over {self.world_size} processes; "
                f"make the batch size a multiple of {self.world_size}"
            )
        n = len(batch) // self.world_size
        return batch[self.rank * n : (self.rank + 1) * n]

    def sum_over_ranks(self, value: Tensor) -> Tensor:
        """A detached statistic summed over the ranks of a data-parallel run (itself in one process).

        For normalisers of a loss over the global batch, e.g. the number of pixels a mask keeps:
        ``N * local_sum / sum_over_ranks(local_count)`` averaged over N ranks is the global ratio.
        """
        if self.world_size == 1:
            return value.detach()
        from runner.distributed import sum_over_ranks

        return sum_over_ranks(value)

    def step_generator(self, step: int) -> torch.Generator:
        """A CPU generator seeded by (task seed, step): the batch of a step never depends on history."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + step)


def check_data_source(data: object, accepted: tuple[type, ...], task: str, choices: str) -> None:
    """Refuse another task's data source (``task=physical_params data=streets``) in one line.

    Args:
        data: the instantiated ``data`` node (None: the task's embedded data).
        accepted: the source classes the task reads.
        task: the task's name, for the message.
        choices: what the task takes, in the user's terms (``"data=mesh or data=photo"``).
    """
    if data is not None and not isinstance(data, accepted):
        raise ConfigError(f"task={task} takes {choices}; {type(data).__name__} is another task's data source")
