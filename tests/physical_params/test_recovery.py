"""Each scene recovers its parameters from pixels on a tiny config, from a seeded random guess in the prior."""

from __future__ import annotations

import pytest

from tests.conftest import shared_data

TINY = ["scene.image_size=32", "task.pyramid_weights=[1.0,4.0,16.0]", "logger=none"]
SCENES = {
    "projectile": ["scene.frames=16", "task.horizon_start=null", "loop.steps=40"],
    "push": ["scene.frames=20", "task.horizon_start=null", "loop.steps=40"],
    "bouncing_ball": ["scene.frames=30", "task.horizon_start=null", "loop.steps=40"],
    "sliding_block": ["scene.frames=24", "task.horizon_start=null", "loop.steps=40"],
    "pendulum": ["scene.frames=30", "task.horizon_start=8", "task.horizon_steps=20", "loop.steps=50"],
    "cloth": ["scene.rows=4", "scene.cols=4", "scene.spacing=0.33", "scene.frames=20", "task.horizon_start=null",
              "loop.steps=60"],
}


@pytest.mark.parametrize("scene", list(SCENES))
def test_scene_recovers_its_parameters_from_pixels(fit_scene, scene):
    overrides = [f"scene={scene}", *TINY, *SCENES[scene], "seed=1"]
    task, metrics = fit_scene(overrides)
    initial = {name: task.estimates.initial[name] for name in task.scene.specs}
    for name, spec in task.scene.specs.items():
        start = abs(initial[name] - spec.truth) / spec.truth
        assert metrics[f"rel_err_{name}"] < 0.03, (name, metrics, initial)
        assert metrics[f"rel_err_{name}"] < start  # it moved towards the truth from the random guess
    assert metrics["rel_err"] == max(metrics[f"rel_err_{n}"] for n in task.scene.specs)


@pytest.mark.parametrize("observe", ["tracks2d", "tracks3d"])
def test_tracks_instead_of_pixels(fit_scene, observe):
    _, metrics = fit_scene(["scene=push", "scene.frames=20", f"task.observe={observe}", "task.horizon_start=null",
                            "loop.steps=40", "logger=none"])
    assert metrics["rel_err_mass"] < 0.01


@pytest.mark.slow
def test_real_pendulum_period_matches_the_measured_one(fit_scene):
    shared_data("physics", "schmidt_lipson_real", "real_pend_h_1.txt")
    task, metrics = fit_scene(["experiment=physics_pendulum_real", "scene.duration_s=30", "physics.substeps=2",
                               "task.horizon_steps=40", "loop.steps=60", "logger=none"])
    assert metrics["period_measured"] == pytest.approx(6.0, abs=0.15)  # the first 30 s swing at about 6 s
    assert metrics["rel_err_period"] < 0.01 and metrics["rel_err"] == metrics["rel_err_period"]
    assert metrics["residual_rad"] < 0.05  # the swing is ±1.4 rad
    assert 0 < metrics["damping"] < 0.1
