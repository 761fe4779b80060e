"""Each scene recovers its parameters from pixels on a tiny config; tracks work too; the real pendulum fit."""

from __future__ import annotations

import pytest

from tests.conftest import shared_data

TINY = ["task.pyramid_weights=[1.0,4.0,16.0]", "task.horizon_start=null", "logger=none"]
# Per scene: smaller frames (32 px where that suffices), a shorter video, an initial guess 20-45 % off the truth
# (the benchmark starts from random guesses), and the tolerance per parameter.
SCENES = {
    "projectile": (
        [
            "scene.image_size=32",
            "scene.frames=16",
            "scene.params.speed.init=3.2",
            "scene.params.angle.init=45",
            "loop.steps=40",
        ],
        {"speed": 0.03, "angle": 0.03},
    ),
    "push": (
        ["scene.image_size=32", "scene.frames=20", "scene.params.mass.init=2.5", "optim.lr=0.05", "loop.steps=40"],
        {"mass": 0.03},
    ),
    "bouncing_ball": (
        ["scene.image_size=32", "scene.frames=30", "scene.params.restitution.init=0.5", "loop.steps=30"],
        {"restitution": 0.03},
    ),
    "sliding_block": (
        ["scene.frames=24", "scene.params.friction.init=0.45", "optim.lr=0.05", "loop.steps=40"],
        {"friction": 0.03},
    ),
    "pendulum": (
        [
            "scene.image_size=32",
            "scene.frames=45",
            "scene.params.length.init=1.0",
            "scene.params.damping.init=0.25",
            "loop.steps=40",
        ],
        {"length": 0.03, "damping": 0.1},
    ),
    # Damping shows little in 1 s of 32-px frames; the benchmark measures it at 64 px.
    "cloth": (
        ["scene.image_size=32", "scene.params.stiffness.init=40", "scene.params.damping.init=0.1", "loop.steps=50"],
        {"stiffness": 0.03},
    ),
}
SLOW = {"pendulum", "cloth"}


@pytest.mark.parametrize("scene", [pytest.param(s, marks=pytest.mark.slow) if s in SLOW else s for s in SCENES])
def test_scene_recovers_its_parameters_from_pixels(fit_scene, scene):
    overrides, tolerance = SCENES[scene]
    task, metrics = fit_scene([f"scene={scene}", *TINY, *overrides])
    for name, spec in task.scene.specs.items():
        assert abs(task.estimates.initial[name] - spec.truth) / spec.truth > 0.2
    for name, tol in tolerance.items():
        assert metrics[f"rel_err_{name}"] < tol, (name, metrics)
    assert metrics["rel_err"] == max(metrics[f"rel_err_{n}"] for n in task.scene.specs)


@pytest.mark.parametrize("observe", ["tracks2d", "tracks3d"])
def test_tracks_instead_of_pixels(fit_scene, observe):
    _, metrics = fit_scene(
        [
            "scene=push",
            "scene.frames=20",
            f"task.observe={observe}",
            "task.horizon_start=null",
            "loop.steps=40",
            "logger=none",
        ]
    )
    assert metrics["rel_err_mass"] < 0.01


@pytest.mark.slow
def test_real_pendulum_period_matches_the_measured_one(fit_scene):
    shared_data("physics", "schmidt_lipson_real", "real_pend_h_1.txt")
    task, metrics = fit_scene(
        [
            "experiment=physics_pendulum_real",
            "scene.duration_s=30",
            "physics.substeps=2",
            "task.horizon_steps=40",
            "loop.steps=60",
            "logger=none",
        ]
    )
    assert metrics["period_measured"] == pytest.approx(6.0, abs=0.15)  # the first 30 s swing at about 6 s
    # 60 steps on 30 s of a real, tracked swing: measured 1.4 % in CI; the full experiment fits longer
    assert metrics["rel_err_period"] < 0.02 and metrics["rel_err"] == metrics["rel_err_period"]
    # the swing is ±1.4 rad; the full 100-step fit leaves 0.165 rad RMS (benchmarks/physics.py), this
    # 60-step one 0.21 rad; a model that does not fit stays near 1 rad
    assert metrics["residual_rad"] < 0.3
    assert 0 < metrics["damping"] < 0.1
