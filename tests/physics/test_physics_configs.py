"""Every configs/physics/*.yaml instantiates its engine and documents every constructor argument."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from tests.conftest import OPTIONAL_CONFIGS

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "physics").glob("*.yaml"))


def test_every_backend_has_a_config():
    assert {p.stem for p in CONFIGS} >= {"rigid", "pendulum", "mass_spring", "warp_springs"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_is_documented_and_instantiates(path: Path):
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ") and len(lines[0]) > 10, "first line: a one-line description comment"
    cfg = OmegaConf.load(path)
    keys = set(cfg) - {"_target_"}
    for line in lines[1:]:
        key = line.split(":")[0]
        if key in keys:
            assert "#" in line, f"{path.name}: key {key!r} has no comment"
    needed = OPTIONAL_CONFIGS.get(f"physics/{path.stem}")
    if needed is not None:
        pytest.importorskip(needed, reason=f"{path.name} needs the optional package {needed!r}, not installed")
    cls = get_class(cfg._target_)
    assert keys == set(inspect.signature(cls.__init__).parameters) - {"self"}, "every constructor key, no other"
    engine = instantiate(cfg)
    assert isinstance(engine, cls)
    for key in keys:
        assert getattr(engine, key) == cfg[key]
