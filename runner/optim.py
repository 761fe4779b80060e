"""Optimisers and schedulers from the ``optim`` and ``scheduler`` config groups.

The task names its parameter groups (``Task.param_groups``); ``optim.groups.<name>`` overrides any
optimiser argument (usually ``lr``) for one group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from runner.errors import ConfigError


def build_optimizer(cfg: DictConfig, named_groups: Mapping[str, list[torch.Tensor]]) -> torch.optim.Optimizer:
    """Instantiate ``cfg._target_`` on the task's named parameter groups."""
    args = OmegaConf.to_container(cfg, resolve=True)
    overrides = args.pop("groups", None) or {}
    unknown = sorted(set(overrides) - set(named_groups))
    if unknown:
        raise ConfigError(f"optim.groups: unknown group(s) {unknown}; this task's groups are {sorted(named_groups)}")
    groups = []
    for name, params in named_groups.items():
        params = [p for p in params if p.requires_grad]
        if params:
            groups.append({"params": params, "name": name, **overrides.get(name, {})})
    if not groups:
        raise ConfigError("the task has no trainable parameters to optimise")
    if args["_target_"] == "torch.optim.LBFGS" and len(groups) > 1:
        # L-BFGS supports a single parameter group: merge them (per-group settings cannot apply).
        if overrides:
            raise ConfigError("optim=lbfgs takes one parameter group; remove optim.groups overrides")
        groups = [{"params": [p for g in groups for p in g["params"]], "name": "all"}]
    try:
        return instantiate(OmegaConf.create(args), params=groups, _convert_="all")
    except Exception as e:
        raise ConfigError(f"optim: cannot build {args['_target_']}: {e.__cause__ or e}") from e


# scheduler keys whose null means "the run's length", which only the runner knows (loop.epochs x an epoch)
RUN_LENGTH_KEYS = ("T_max", "total_steps")


def build_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    """The learning-rate scheduler, or None for ``scheduler=none``; stepped once per loop step.

    Args:
        total_steps: the run's length in steps, given to the scheduler's ``T_max`` / ``total_steps`` when they
            are null.
    """
    if cfg is None or cfg.get("_target_") is None:
        return None
    lengths = {k: total_steps for k in RUN_LENGTH_KEYS if k in cfg and cfg.get(k) is None}
    try:
        return instantiate(cfg, optimizer=optimizer, **lengths)
    except Exception as e:
        raise ConfigError(f"scheduler: cannot build {cfg._target_}: {e.__cause__ or e}") from e


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    total_steps: int,
    start_factor: float = 0.01,
    final_factor: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then half a cosine down to the end of training.

    The factor on each group's base rate rises linearly from ``start_factor`` at step 0 to 1 at
    ``warmup_steps``, then follows a half cosine from 1 to ``final_factor`` at ``total_steps``
    (and stays there if training runs longer).
    """
    if not 0 <= warmup_steps < total_steps:
        raise ConfigError(f"need 0 <= warmup_steps < total_steps, got {warmup_steps} and {total_steps}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return start_factor + (1.0 - start_factor) * step / warmup_steps
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
