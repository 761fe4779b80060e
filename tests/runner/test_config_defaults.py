"""One source for every default: where a config group's YAML configures one of dwx's own classes, each key it sets
has the value of the constructor's default, so that Python API users, tests and the CLI run the same thing.

Nodes that configure a second instance on purpose (a scene's finer ground-truth engine, recon's hard evaluation
renderer) are settings of the experiment, not defaults, and are left out.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path

import pytest
from hydra.utils import get_method
from omegaconf import DictConfig, ListConfig, OmegaConf

from runner.cli import CONFIG_DIR

GROUPS = ("task", "task_mode", "data", "renderer", "physics", "scene", "mode")
SECOND_INSTANCES = ("truth_physics", "gt_renderer")


def _own_targets(node, path: str = ""):
    """(key path, class, node) of every node below ``node`` whose ``_target_`` is one of dwx's classes."""
    if not isinstance(node, DictConfig) or path.split(".")[-1] in SECOND_INSTANCES:
        return
    target = node.get("_target_") if "_target_" in node else None
    if isinstance(target, str) and target.startswith(("runner.", "tasks.")):
        yield path or "<root>", get_method(target), node
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            yield from _own_targets(child, f"{path}.{key}" if path else str(key))


def _plain(value):
    """Tuples as lists, recursively, to compare constructor defaults with YAML values."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _disagreements(path: Path) -> list[str]:
    found = []
    for where, cls, node in _own_targets(OmegaConf.load(path)):
        for name, parameter in inspect.signature(cls).parameters.items():
            if name not in node or parameter.default is inspect.Parameter.empty:
                continue
            raw = node._get_node(name)._value()
            if isinstance(raw, str) and "${" in raw:  # an interpolation: set by the run, not a default
                continue
            value = node[name]
            if (isinstance(value, DictConfig) and "_target_" in value) or (
                isinstance(value, ListConfig) and any(isinstance(v, DictConfig) for v in value)
            ):
                continue  # nested objects (lights) are compared by their own node
            if isinstance(value, (DictConfig, ListConfig)):  # plain mappings (task.losses) and lists
                value = OmegaConf.to_container(value)
            default = dict(parameter.default) if isinstance(parameter.default, Mapping) else parameter.default
            if _plain(value) != _plain(default):
                found.append(f"{where}.{name}: YAML {value!r}, {cls.__name__}() default {parameter.default!r}")
    return found


@pytest.mark.parametrize(
    "path",
    sorted(p for g in GROUPS for p in (CONFIG_DIR / g).glob("*.yaml")),
    ids=lambda p: f"{p.parent.name}/{p.stem}",
)
def test_yaml_and_constructor_defaults_agree(path):
    assert _disagreements(path) == []
