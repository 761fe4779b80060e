"""Checks of the composed config that Hydra cannot do: ranges and types, named by key with the fix."""

from __future__ import annotations

import re

from omegaconf import DictConfig

from runner.errors import ConfigError


def _positive_int(cfg: DictConfig, key: str, allow_none: bool = False, allow_zero: bool = False) -> None:
    value = cfg.get(key.rsplit(".", 1)[-1]) if "." not in key else _select(cfg, key)
    if value is None and allow_none:
        return
    ok = isinstance(value, int) and not isinstance(value, bool) and (value > 0 or (allow_zero and value == 0))
    if not ok:
        need = "a non-negative integer" if allow_zero else "a positive integer"
        raise ConfigError(
            f"{key} must be {need}{' or null' if allow_none else ''}, got {value!r}: set {key}=<{need.split()[-2]} int>"
        )


def _select(cfg: DictConfig, key: str):
    node = cfg
    for part in key.split("."):
        node = node.get(part) if node is not None else None
    return node


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_number(cfg: DictConfig, key: str, allow_none: bool = False) -> None:
    value = _select(cfg, key)
    if value is None and allow_none:
        return
    if not _is_number(value) or not value > 0:
        raise ConfigError(f"{key} must be a positive number, got {value!r}: set {key}=<number > 0>")


def _one_of(cfg: DictConfig, key: str, choices: tuple[str, ...]) -> None:
    value = _select(cfg, key)
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {value!r}")


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first out-of-range or mistyped value of the runner's own keys."""
    task = cfg.get("task")
    if task is None or not isinstance(task, DictConfig) or "_target_" not in task:
        # task keys without a task (an experiment or override that sets task.* but selects none)
        raise ConfigError("no task given: add task=<name> (dwx list shows the tasks)")
    if cfg.get("epochs", None) is None:
        _positive_int(cfg, "loop.steps")
    _positive_int(cfg, "loop.epochs", allow_none=True)
    for key in ("loop.eval_every", "loop.log_every", "loop.checkpoint_every"):
        _positive_int(cfg, key)
    _positive_int(cfg, "loop.image_every", allow_zero=True)
    _positive_number(cfg, "loop.clip_grad_norm", allow_none=True)
    ema = _select(cfg, "loop.ema_decay")
    if ema is not None and (not _is_number(ema) or not 0 < ema < 1):
        raise ConfigError(f"loop.ema_decay must be in (0, 1) or null, got {ema!r}: e.g. loop.ema_decay=0.998")
    _positive_int(cfg, "loop.early_stopping.patience", allow_none=True)
    _one_of(cfg, "loop.nonfinite", ("stop", "skip"))
    share = _select(cfg, "loop.max_skipped_fraction")
    if not _is_number(share) or not 0 <= share <= 1:
        raise ConfigError(
            f"loop.max_skipped_fraction must be in [0, 1], got {share!r}: e.g. loop.max_skipped_fraction=0.1"
        )
    _one_of(cfg, "loop.progress", ("auto", "bar", "lines", "off"))
    _positive_number(cfg, "optim.lr")
    groups = _select(cfg, "optim.groups") or {}
    for name, group in groups.items():
        if group is not None and "lr" in group:
            _positive_number(cfg, f"optim.groups.{name}.lr")
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}: set seed=<int>")
    _positive_int(cfg, "threads", allow_none=True)
    if not isinstance(cfg.get("malloc_tuning"), bool):
        raise ConfigError(f"malloc_tuning must be true or false, got {cfg.get('malloc_tuning')!r}")
    device = cfg.get("device")
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", device):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:<index>, got {device!r}")
