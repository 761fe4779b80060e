"""Every physics engine `dwx list physics` offers runs every scene whose capability it declares, and only those.

A scene names the model it simulates with (springs, rigid contact, pendulum; runner.physics.base); an engine
declares the models it simulates. Validation refuses a pair that does not fit with one line naming the engines
that do, before any work.
"""

from __future__ import annotations

import re

import pytest
from hydra.utils import get_class

from runner.cli import CONFIG_DIR
from runner.errors import ConfigError
from runner.listing import option_targets
from runner.physics.base import capabilities_of
from runner.validation import validate
from tests.conftest import missing_tool
from tests.physical_params.conftest import compose_task, fit

SCENES = sorted(p.stem for p in (CONFIG_DIR / "scene").glob("*.yaml") if p.stem != "pendulum_real")  # real data
ENGINES = option_targets(CONFIG_DIR, "physics")


def _engine_class(engine: str) -> type:
    """The class of ``physics=<engine>``; an optional engine that is not installed skips (fails under CI)."""
    try:
        return get_class(ENGINES[engine])
    except ImportError as error:
        missing_tool(f"physics={engine} is not installed ({error.__cause__ or error})")


def _fits(scene: str, engine: str) -> bool:
    scene_class = get_class(compose_task([f"scene={scene}"]).scene._target_)
    return scene_class.needs in capabilities_of(_engine_class(engine))


def test_every_scene_has_an_engine_and_every_engine_a_scene():
    pairs = [(s, e) for s in SCENES for e in ENGINES if _fits(s, e)]
    assert {s for s, _ in pairs} == set(SCENES) and {e for _, e in pairs} == set(ENGINES)


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("scene", SCENES)
def test_a_fitting_engine_runs_the_scene_and_another_is_refused_by_name(scene, engine):
    overrides = [f"scene={scene}", f"physics={engine}", "loop.steps=2", "loop.eval_every=2"]
    if not _fits(scene, engine):
        with pytest.raises(ConfigError, match=rf"^physics={engine} cannot serve scene \w+, which needs \w+: choose "):
            validate(compose_task(overrides))
        return
    validate(compose_task(overrides))
    _, metrics = fit(overrides)
    assert all(v == v for v in metrics.values())  # finite, no NaN


def test_the_refusal_names_every_engine_that_fits():
    with pytest.raises(ConfigError) as error:
        validate(compose_task(["scene=cloth", "physics=rigid"]))
    assert re.search(r"choose physics=mass_spring or physics=warp_springs$", str(error.value))


def test_cloth_on_warp_springs_recovers_what_mass_spring_does():
    """The same model in two engines: the same fit, to float32 rounding over the short run."""
    common = ["scene=cloth", "loop.steps=15", "loop.eval_every=15"]
    _, torch_engine = fit([*common, "physics=mass_spring"])
    _, warp_engine = fit([*common, "physics=warp_springs"])
    for name in ("stiffness", "damping"):
        assert warp_engine[name] == pytest.approx(torch_engine[name], rel=1e-3)
