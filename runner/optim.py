"""Optimisers and schedulers from the ``optim`` and ``scheduler`` config groups.

The task names its parameter groups (``Task.param_groups``); ``optim.groups.<name>`` overrides any
optimiser argument (usually ``lr``) for one group.
"""

from __future__ import annotations

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


def build_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer):
    """The learning-rate scheduler, or None for ``scheduler=none``; stepped once per loop step."""
    if cfg is None or cfg.get("_target_") is None:
        return None
    try:
        return instantiate(cfg, optimizer=optimizer)
    except Exception as e:
        raise ConfigError(f"scheduler: cannot build {cfg._target_}: {e.__cause__ or e}") from e
