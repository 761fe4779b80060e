"""loop.time_budget: a wall-time cap under which every schedule still completes (runner/budget.py)."""

from __future__ import annotations

import json

import pytest

from runner.budget import Budget, parse_duration
from runner.errors import ConfigError
from runner.loop import Loop
from tests.conftest import run_dwx
from tests.runner.test_loop import make_loop

COSINE = {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "T_max": 100, "eta_min": 0.0}


@pytest.mark.parametrize(
    "value, seconds",
    [(None, None), (600, 600.0), (2.5, 2.5), ("90s", 90.0), ("10m", 600.0), ("1.5h", 5400.0), (" 45 ", 45.0)],
)
def test_durations_parse_to_seconds(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["ten", "-5m", "10d", "0", 0, -1, True, float("nan"), float("inf"), "m"])
def test_bad_durations_are_config_errors(value):
    with pytest.raises(ConfigError, match="loop.time_budget"):
        parse_duration(value)


def test_position_follows_the_larger_of_steps_and_time_and_stops_at_the_budget():
    budget = Budget(steps=100, seconds=10.0)
    assert budget.position(3, 0.1) == 3  # ahead of the clock: the step count
    assert budget.position(3, 5.0) == 50  # behind it: half the time is half the schedule
    assert budget.position(3, 11.0) == 100
    assert Budget(steps=100).position(7, 1e9) == 7  # no time limit: the step count
    assert budget.position(3, 4.0, closing_s=1.0) == 50  # the closing evaluation's time counts as spent


def _fake_clock(monkeypatch, seconds_per_step: float) -> None:
    """The loop's wall time becomes ``seconds_per_step`` per optimiser step taken (a machine of known speed)."""
    monkeypatch.setattr(Loop, "wall_time", lambda self: self.taken * seconds_per_step)


def test_a_slow_machine_takes_fewer_steps_through_the_whole_schedule(monkeypatch):
    _fake_clock(monkeypatch, seconds_per_step=1.0)
    loop = make_loop(steps=100, scheduler=COSINE, time_budget=10.0, eval_every=50)
    positions, evaluated = [], []
    loss, evaluate = loop.task.loss, loop.task.evaluate
    monkeypatch.setattr(loop.task, "loss", lambda step: positions.append(step) or loss(step))
    monkeypatch.setattr(loop.task, "evaluate", lambda: evaluated.append(loop.step) or evaluate())

    result = loop.run()

    assert (result.steps, result.schedule_steps) == (10, 100)
    assert positions == list(range(0, 100, 10))  # each step sees the schedule position the time allows
    assert evaluated == [50, 100]  # the cadences follow the position: the same evaluations as a full run
    assert loop.scheduler.last_epoch == 100 and loop.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_a_fast_machine_runs_the_step_budget_as_without_a_time_budget(monkeypatch):
    _fake_clock(monkeypatch, seconds_per_step=1e-3)
    timed = make_loop(steps=60, scheduler=COSINE, time_budget=600.0).run()
    plain = make_loop(steps=60, scheduler=COSINE).run()
    assert (timed.steps, timed.schedule_steps) == (60, 60)
    assert timed.metrics == plain.metrics  # the same steps, schedule and batches: the same numbers


def test_the_cli_ends_on_time_and_records_the_budget(tmp_path):
    run = tmp_path / "run"
    out = run_dwx(
        "run",
        "experiment=physics_tiny",
        "loop.steps=100000",
        "loop.time_budget=3s",
        "logger=none",
        f"hydra.run.dir={run}",
    )
    assert out.returncode == 0, out.stderr
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "completed" and record["time_budget_s"] == 3.0
    assert record["schedule_steps"] == 100000 and 0 < record["steps"] < 100000
    assert record["wall_time_s"] < 3.0 + 10  # the closing fits in the budget; the artifacts come on top
    assert "whichever comes first" in out.stdout and "the time budget (3 s) allowed" in out.stdout
