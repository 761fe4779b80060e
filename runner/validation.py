"""Checks of the composed config that Hydra cannot do: ranges and types, named by key with the fix."""

from __future__ import annotations

import math
import re
from collections import abc

from omegaconf import DictConfig, ListConfig

from runner.budget import parse_duration
from runner.errors import ConfigError, first_line


def _positive_int(cfg: DictConfig, key: str, allow_none: bool = False, allow_zero: bool = False) -> None:
    value = cfg.get(key.rsplit(".", 1)[-1]) if "." not in key else _select(cfg, key)
    if value is None and allow_none:
        return
    ok = _is_int(value) and (value > 0 or (allow_zero and value == 0))
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
    if not _is_number(value) or not 0 < value < math.inf:
        raise ConfigError(f"{key} must be a positive finite number, got {value!r}: set {key}=<number > 0>")


def _one_of(cfg: DictConfig, key: str, choices: tuple[str, ...]) -> None:
    value = _select(cfg, key)
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {value!r}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value) -> bool:
    return _is_number(value) and math.isfinite(value)


_POSITIVE_INT = (lambda v: _is_int(v) and v > 0, "a positive integer", "int > 0")
_POSITIVE = (lambda v: _is_finite(v) and v > 0, "a positive finite number", "number > 0")
_NON_NEGATIVE = (lambda v: _is_finite(v) and v >= 0, "a finite number >= 0", "number >= 0")
# Keys of the scheduler, renderer and data groups that must lie in a range, by name (a key means the same
# in every config of a group that has it): (test, what the value must be, the fix's placeholder).
_RANGES = {
    **dict.fromkeys(("step_size", "total_iters"), _POSITIVE_INT),  # schedulers [steps]
    # [steps]; null = the run's length (runner.optim.build_scheduler)
    **dict.fromkeys(
        ("T_max", "total_steps"), (lambda v: v is None or _is_int(v) and v > 0, "a positive integer or null", "int > 0")
    ),
    "warmup_steps": (lambda v: _is_int(v) and v >= 0, "a non-negative integer", "int >= 0"),
    "gamma": _POSITIVE,  # decay factor of a scheduler; colour-blend temperature of soft_mesh
    "eta_min": _NON_NEGATIVE,
    "final_factor": _NON_NEGATIVE,
    "start_factor": (lambda v: _is_finite(v) and 0 < v <= 1, "a number in (0, 1]", "fraction"),
    **dict.fromkeys(("sigma", "sigma_scale", "cutoff", "near", "znear", "zfar", "shininess"), _POSITIVE),  # renderers
    "blur_px": _NON_NEGATIVE,
    "max_alpha": (lambda v: _is_finite(v) and 0 < v < 1, "a number in (0, 1)", "fraction"),
    **dict.fromkeys(("supersample", "faces_per_pixel", "max_pairs", "tile_size", "max_chunk_elements"), _POSITIVE_INT),
    "frame_stride": _POSITIVE_INT,  # data sources
}


def _ranges(cfg: DictConfig, node_key: str) -> None:
    """Check every key of the config node at ``node_key`` that :data:`_RANGES` names (no node: nothing)."""
    node = _select(cfg, node_key)
    if not isinstance(node, DictConfig):
        return
    for name in node:
        if name in _RANGES:
            test, what, hint = _RANGES[name]
            value = node.get(name)
            if not test(value):
                key = f"{node_key}.{name}"
                raise ConfigError(f"{key} must be {what}, got {value!r}: set {key}=<{hint}>")


def _ordered(cfg: DictConfig, node_key: str, low: str, high: str) -> None:
    """``<node_key>.<low>`` must be below ``<node_key>.<high>`` when the node has both."""
    node = _select(cfg, node_key)
    if isinstance(node, DictConfig) and low in node and high in node and not node.get(low) < node.get(high):
        raise ConfigError(
            f"{node_key}.{low} must be less than {node_key}.{high}, got {node.get(low)!r} and {node.get(high)!r}: "
            f"lower {node_key}.{low} or raise {node_key}.{high}"
        )


def _warm_up_within_the_schedule(cfg: DictConfig) -> None:
    """A warm-up-then-decay schedule's warm-up must end before its length (``scheduler.total_steps``, or the
    run's length when null; with ``loop.epochs`` that is known only once the task is built, where the scheduler
    itself checks)."""
    node = _select(cfg, "scheduler")
    if not isinstance(node, DictConfig) or "warmup_steps" not in node or "total_steps" not in node:
        return
    total = node.get("total_steps")
    if total is None and _select(cfg, "loop.epochs") is None:
        total = _select(cfg, "loop.steps")
    warm = node.get("warmup_steps")
    if _is_int(total) and _is_int(warm) and not warm < total:
        raise ConfigError(
            f"scheduler.warmup_steps must be less than the schedule's length (scheduler.total_steps, null: "
            f"loop.steps), got {warm} and {total}: lower scheduler.warmup_steps or raise loop.steps"
        )


def image_size_value(value: object) -> int | tuple[int, int] | None:
    """An image size as configs give it: a height H (positive int) or (H, W) (two positive ints); None if neither."""
    if _is_int(value) and value > 0:
        return value
    if isinstance(value, abc.Sequence) and not isinstance(value, str) and len(value) == 2:
        if all(_is_int(s) and s > 0 for s in value):
            return int(value[0]), int(value[1])
    return None


def _image_size(cfg: DictConfig, key: str) -> None:
    """``key`` (when the config has it) must be [H, W] or a height H: positive integers [px]."""
    parent, _, name = key.rpartition(".")
    node = _select(cfg, parent)
    if not isinstance(node, DictConfig) or name not in node:
        return
    value = node.get(name)
    if image_size_value(value) is None:
        raise ConfigError(
            f"{key} must be [H, W] or a height H, positive integers [px], got {value!r}: e.g. {key}=[96,320]"
        )


def _targets(node, path: str = "") -> list[tuple[str, str]]:
    """(key, ``_target_``) of every node below ``node`` that names one."""
    found = []
    if isinstance(node, DictConfig):
        target = node.get("_target_")
        if isinstance(target, str):
            found.append((path or "<root>", target))
        for key in node:
            child = node._get_node(key)  # unresolved: a missing interpolation is not this check's business
            if isinstance(child, (DictConfig, ListConfig)):
                found += _targets(child, f"{path}.{key}" if path else str(key))
    elif isinstance(node, ListConfig):
        for i, child in enumerate(node._iter_ex(resolve=False)):
            found += _targets(child, f"{path}[{i}]")
    return found


def _optional_backends(cfg: DictConfig) -> None:
    """A backend whose optional package is missing (physics=warp_springs without warp) is one line naming
    the extra to install, not Hydra's "Error locating target" after the run has started."""
    import importlib

    for key in ("renderer", "physics", "task"):
        node = cfg.get(key)
        for path, target in _targets(node, key) if node is not None else []:
            try:
                importlib.import_module(target.rpartition(".")[0])
            except ImportError as e:  # other import problems are Hydra's to report, as before
                if "pip install" in str(e):
                    raise ConfigError(f"{path}: {first_line(e)}") from e


def _located(target) -> type | None:
    """The class a ``_target_`` names, or None when it does not import (``_optional_backends`` reports that)."""
    from hydra.utils import get_class

    try:
        return get_class(target) if isinstance(target, str) else None
    except Exception:  # noqa: BLE001 - any failure to import is reported elsewhere, not here
        return None


def _backend_fits(group: str, node: DictConfig, needs: str, client: str) -> None:
    """The backend configured at ``group`` (a renderer or physics engine) must declare ``needs`` among its
    capabilities (``draws`` / ``capabilities``); else one line naming the group's options that do."""
    from runner.cli import CONFIG_DIR
    from runner.listing import offers, option_targets

    backend = _located(node.get("_target_"))
    if backend is None or needs in offers(group, backend):
        return
    options = option_targets(CONFIG_DIR, group)
    chosen = next((name for name, target in options.items() if target == node.get("_target_")), backend.__name__)
    fitting = [name for name, target in options.items() if needs in offers(group, _located(target))]
    raise ConfigError(
        f"{group}={chosen} cannot serve {client}, which needs {needs}: choose "
        + (" or ".join(f"{group}={name}" for name in fitting) or f"a {group} with that capability")
    )


def _backends_fit(cfg: DictConfig) -> None:
    """Backends plug in by capability: the task's renderer draws the scene type the task renders, and a
    physical_params scene's engine simulates the model the scene needs; checked before any work."""
    task, renderer = cfg.get("task"), cfg.get("renderer")
    renders = getattr(_located(task.get("_target_")), "renders", None)
    if renders is not None and isinstance(renderer, DictConfig):
        _backend_fits("renderer", renderer, renders, f"task {task.get('_target_').rsplit('.', 1)[-1]}")
    scene, physics = cfg.get("scene"), cfg.get("physics")
    if isinstance(scene, DictConfig) and isinstance(physics, DictConfig):
        scene_class = _located(scene.get("_target_"))
        if getattr(scene_class, "needs", None) is not None:
            _backend_fits("physics", physics, scene_class.needs, f"scene {scene_class.__name__}")


def _settings_of(target) -> set[str] | None:
    """The keyword arguments the class at ``target`` takes, or None when it takes any (``**kwargs``) or does not
    import."""
    import inspect

    backend = _located(target)
    if backend is None:
        return None
    parameters = inspect.signature(backend).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def _backend_keys(cfg: DictConfig, group: str) -> None:
    """Every key set for the chosen renderer / physics engine is one of its settings: a key of another backend
    (``renderer.sigma`` of soft_mesh with ``renderer=mitsuba``) or a typo is one line, never silently dropped."""
    from runner.cli import CONFIG_DIR
    from runner.listing import option_targets

    node = cfg.get(group)
    settings = _settings_of(node.get("_target_")) if isinstance(node, DictConfig) else None
    if settings is None:
        return
    unknown = sorted(str(key) for key in node if not str(key).startswith("_") and key not in settings)
    if not unknown:
        return
    key, options = unknown[0], option_targets(CONFIG_DIR, group)
    chosen = next((name for name, target in options.items() if target == node.get("_target_")), node.get("_target_"))
    owners = [name for name, target in options.items() if name != chosen and key in (_settings_of(target) or ())]
    raise ConfigError(
        f"{group}.{key} is not a setting of {group}={chosen}"
        + (f" but of {' and '.join(f'{group}={owner}' for owner in owners)}" if owners else "")
        + f": remove it with ~{group}.{key}"
        + (f" or choose {group}={owners[0]}" if owners else f" (its settings: {', '.join(sorted(settings))})")
    )


def _refers_to(node, group: str, skip: str) -> bool:
    """Whether any value below ``node`` (unresolved), outside the subtree at ``skip``, interpolates ``${group}``
    or one of its keys."""
    pattern = re.compile(r"\$\{" + re.escape(group) + r"[.}]")
    children = node.items_ex(resolve=False) if isinstance(node, DictConfig) else enumerate(node._iter_ex(False))
    for key, _ in children:
        if key == skip and node._get_parent() is None:  # the group's own node, at the root
            continue
        child = node._get_node(key)
        if isinstance(child, (DictConfig, ListConfig)):
            if _refers_to(child, group, skip):
                return True
        elif isinstance(child._value(), str) and pattern.search(child._value()):
            return True
    return False


def chosen_groups(overrides: list[str]) -> set[str]:
    """The backend and data groups a command line chooses (``physics=rigid``, ``renderer=splat``, ``data=frames``)."""
    return {o.split("=", 1)[0].lstrip("+") for o in overrides if "=" in o} & {"renderer", "physics", "data"}


def _groups_used(cfg: DictConfig, chosen: set[str]) -> None:
    """A backend or data source the user chose for a task that does not use it (``task=single_view_recon
    physics=rigid``) is refused, never silently dropped: some part of the config must interpolate ``${renderer}``
    / ``${physics}`` / ``${data}``. (A task's own default choice that a data source leaves unused, e.g. the
    streets' ray caster with ``data=seven_scenes``, is not the user's and passes.)"""
    task = str(cfg.task.get("_target_", "")).split(".")
    name = task[1] if len(task) > 1 and task[0] == "tasks" else ".".join(task)
    for group in sorted(chosen):
        if cfg.get(group) is not None and not _refers_to(cfg, group, skip=group):
            raise ConfigError(f"task={name} has no use for the {group}= override (nothing in its config refers to "
                              f"${{{group}}}): remove it")


def validate(cfg: DictConfig, chosen: set[str] = frozenset()) -> None:
    """Raise :class:`ConfigError` for the first out-of-range or mistyped value of the runner's own keys, or a
    backend / data group in ``chosen`` (:func:`chosen_groups` of the command line) that the task does not use."""
    task = cfg.get("task")
    if task is None or not isinstance(task, DictConfig) or "_target_" not in task:
        # task keys without a task (an experiment or override that sets task.* but selects none)
        raise ConfigError("no task given: add task=<name> (dwx list shows the tasks)")
    if _select(cfg, "loop.epochs") is None:
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
    parse_duration(_select(cfg, "loop.time_budget"))
    _positive_number(cfg, "optim.lr")
    groups = _select(cfg, "optim.groups") or {}
    for name, group in groups.items():
        if group is not None and "lr" in group:
            _positive_number(cfg, f"optim.groups.{name}.lr")
    seed = cfg.get("seed")
    if not _is_int(seed):
        raise ConfigError(f"seed must be an integer, got {seed!r}: set seed=<int>")
    if cfg.get("threads") != "auto":
        _positive_int(cfg, "threads", allow_none=True)
    if not isinstance(cfg.get("malloc_tuning"), bool):
        raise ConfigError(f"malloc_tuning must be true or false, got {cfg.get('malloc_tuning')!r}")
    device = cfg.get("device")
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", device):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:<index>, got {device!r}")
    _groups_used(cfg, chosen)
    _optional_backends(cfg)
    _backends_fit(cfg)
    for group in ("renderer", "physics"):
        _backend_keys(cfg, group)
    for node in ("scheduler", "renderer", "task.gt_renderer", "data"):
        _ranges(cfg, node)
    _warm_up_within_the_schedule(cfg)
    _ordered(cfg, "renderer", "znear", "zfar")
    _image_size(cfg, "data.image_size")
