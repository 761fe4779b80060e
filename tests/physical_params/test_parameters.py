"""Parameter spaces, priors and initial guesses; relative errors; the pixel and track losses."""

from __future__ import annotations

import math

import pytest
import torch

from runner.errors import ConfigError
from tasks.physical_params.losses import pyramid_mse, track_mse
from tasks.physical_params.metrics import parameter_metrics, relative_error
from tasks.physical_params.parameters import Estimates, ParamSpec, specs_from_config


@pytest.mark.parametrize("space, low, high", [("logit", 0.3, 0.95), ("log", 0.5, 20.0)])
def test_raw_round_trip_and_bounds(space, low, high):
    spec = ParamSpec("p", low, high, space=space)
    for value in (low + 0.1 * (high - low), spec.middle, high - 0.1 * (high - low)):
        raw = torch.tensor(spec.to_raw(value), dtype=torch.float64)
        assert float(spec.from_raw(raw)) == pytest.approx(value, rel=1e-12)
    if space == "logit":  # never leaves the prior, however far the optimiser goes
        assert low <= float(spec.from_raw(torch.tensor(-50.0))) < float(spec.from_raw(torch.tensor(50.0))) <= high


def test_initial_guesses_are_seeded_inside_the_prior_and_respect_init():
    specs = specs_from_config({"a": {"low": 1.0, "high": 5.0, "space": "log"}, "b": {"low": 0.1, "high": 0.8}})
    draws = [Estimates(specs, seed).initial for seed in range(20)]
    assert draws[3] == Estimates(specs, 3).initial
    assert len({d["a"] for d in draws}) == 20
    assert all(1.0 < d["a"] < 5.0 and 0.1 < d["b"] < 0.8 for d in draws)
    given = specs_from_config({"a": {"low": 1.0, "high": 5.0, "init": 2.0}, "b": {"low": 0.1, "high": 0.8}})
    est = Estimates(given, 3)
    assert float(est.values()["a"].detach()) == pytest.approx(2.0)
    assert est.initial["b"] == draws[3]["b"]  # giving one init does not change the other's draw


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"low": 2.0, "high": 1.0}, "low < high"),
        ({"low": 0.0, "high": 1.0, "space": "log"}, "positive prior"),
        ({"low": 0.1, "high": 0.8, "truth": 0.9}, "outside the prior"),
        ({"low": 0.1, "high": 0.8, "space": "linear"}, "logit or log"),
        ({"low": 0.1, "high": 0.8, "prior": 3}, "unknown key"),
        ({"high": 0.8}, "prior range"),
    ],
)
def test_bad_parameter_configs_name_the_key(entry, message):
    with pytest.raises(ConfigError, match=message):
        specs_from_config({"mass": entry})


def test_metrics_per_parameter():
    specs = specs_from_config({"m": {"low": 1.0, "high": 5.0, "truth": 2.0}, "k": {"low": 1.0, "high": 5.0}})
    out = parameter_metrics(specs, {"m": 2.1, "k": 3.0})
    assert out["rel_err_m"] == pytest.approx(0.05) and out["m_true"] == 2.0 and out["k"] == 3.0
    assert "rel_err_k" not in out and "k_true" not in out
    assert relative_error(0.0, 0.0) == 0.0 and math.isinf(relative_error(1.0, 0.0))


def test_pyramid_loss_coarse_levels_see_a_displaced_blob():
    target = torch.zeros(1, 16, 16, 3)
    target[0, 4, 4] = 1.0
    near, far = torch.zeros_like(target), torch.zeros_like(target)
    near[0, 5, 5] = 1.0
    far[0, 12, 12] = 1.0
    fine_only = [1.0, 0.0, 0.0]
    assert pyramid_mse(near, target, fine_only) == pyramid_mse(far, target, fine_only)  # no signal at full res
    coarse = [0.0, 0.0, 1.0]
    assert pyramid_mse(near, target, coarse) < pyramid_mse(far, target, coarse)
    with pytest.raises(ValueError, match="divisible"):
        pyramid_mse(torch.zeros(1, 6, 6, 3), torch.zeros(1, 6, 6, 3), [1.0, 1.0, 1.0])


def test_track_loss_is_mean_squared_distance():
    pred = torch.zeros(2, 3, 2)
    target = torch.zeros(2, 3, 2)
    target[..., 0] = 3.0
    target[..., 1] = 4.0
    assert float(track_mse(pred, target)) == pytest.approx(25.0)
