"""The loop in-process: optimisers, per-group learning rates, schedulers, epochs, early stopping."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from runner.errors import ConfigError, NonFiniteError
from runner.logging import NullLogger
from runner.loop import Loop, LoopSettings, run_length
from runner.optim import build_optimizer, build_scheduler
from tests.conftest import ROOT, RecordingLogger
from tests.fixtures.pose_task import PointCloudPose

OPTIM = {
    "adam": {"_target_": "torch.optim.Adam", "lr": 0.05, "groups": {}},
    "sgd": {"_target_": "torch.optim.SGD", "lr": 0.05, "momentum": 0.9, "groups": {}},
    "lbfgs": {
        "_target_": "torch.optim.LBFGS",
        "lr": 1.0,
        "max_iter": 20,
        "line_search_fn": "strong_wolfe",
        "groups": {},
    },
}


def make_loop(optim="adam", steps=200, scheduler=None, **settings):
    task = PointCloudPose(num_points=64, noise=0.0, seed=1)
    task.setup(torch.device("cpu"))
    opt = build_optimizer(OmegaConf.create(OPTIM[optim] if isinstance(optim, str) else optim), task.param_groups())
    cfg = LoopSettings(
        steps=steps,
        eval_every=settings.pop("eval_every", 50),
        log_every=10,
        image_every=0,
        checkpoint_every=10**6,
        progress="off",
        **settings,
    )
    sched = build_scheduler(OmegaConf.create(scheduler) if scheduler else None, opt, run_length(cfg, task))
    return Loop(task, opt, sched, NullLogger(), cfg)


@pytest.mark.parametrize("optim, steps", [("adam", 300), ("sgd", 300), ("lbfgs", 5)])
def test_each_optimiser_recovers_the_pose(optim, steps):
    result = make_loop(optim, steps).run()
    assert result.metrics["rot_err_deg"] < 0.1 and result.steps == steps


def test_per_group_learning_rates():
    cfg = {**OPTIM["adam"], "groups": {"translation": {"lr": 0.5}}}
    loop = make_loop(cfg, steps=1)
    lrs = {g["name"]: g["lr"] for g in loop.optimizer.param_groups}
    assert lrs == {"rotation": 0.05, "translation": 0.5}


def test_unknown_group_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown group.*'pose'.*rotation"):
        make_loop({**OPTIM["adam"], "groups": {"pose": {"lr": 1.0}}})


def test_scheduler_steps_once_per_step():
    loop = make_loop(steps=100, scheduler={"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "T_max": 100})
    loop.run()
    assert loop.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)


def test_warmup_config_ramps_to_the_base_rate():
    cfg = OmegaConf.load(ROOT / "configs" / "scheduler" / "warmup.yaml")
    cfg.total_iters = 20
    loop = make_loop(steps=10, scheduler=cfg)
    assert loop.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * cfg.start_factor)
    loop.run()  # halfway up the ramp
    assert loop.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * (cfg.start_factor + 1) / 2)
    loop = make_loop(steps=30, scheduler=cfg)
    loop.run()  # then constant
    assert loop.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_warmup_cosine_config_ramps_then_anneals():
    cfg = OmegaConf.load(ROOT / "configs" / "scheduler" / "warmup_cosine.yaml")
    cfg.warmup_steps, cfg.total_steps, cfg.final_factor = 10, 30, 0.1
    expected = {10: 1.0, 20: 0.1 + 0.9 * 0.5, 30: 0.1, 40: 0.1}  # top of the ramp, half-way down, end, after
    assert make_loop(steps=1, scheduler=cfg).optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * cfg.start_factor)
    for steps, factor in expected.items():
        loop = make_loop(steps=steps, scheduler=cfg)
        loop.run()
        assert loop.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * factor), steps
    loop = make_loop(steps=5, scheduler=cfg)
    loop.run()  # half-way up the ramp
    assert loop.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * (cfg.start_factor + 1) / 2)


def test_warmup_cosine_rejects_a_warmup_longer_than_training():
    cfg = OmegaConf.load(ROOT / "configs" / "scheduler" / "warmup_cosine.yaml")
    cfg.warmup_steps, cfg.total_steps = 100, 100
    with pytest.raises(ConfigError, match="warmup_steps < total_steps"):
        make_loop(steps=1, scheduler=cfg)


def test_epochs_use_the_tasks_dataset_size():
    loop = make_loop(steps=1, epochs=3)
    assert loop.total_steps == 3 * loop.task.steps_per_epoch()
    assert loop.run().steps == 12


def test_a_schedule_of_null_length_spans_the_epochs():
    """T_max null is the run's length, which with loop.epochs only the task's dataset knows (4 steps per epoch)."""
    cosine = {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "T_max": None, "eta_min": 0.0}
    loop = make_loop(steps=1000, epochs=3, scheduler=cosine)
    assert loop.scheduler.T_max == loop.total_steps == 12
    loop.run()
    assert loop.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_the_task_plans_for_the_runs_length_before_the_first_step(monkeypatch):
    budgets = []
    monkeypatch.setattr(PointCloudPose, "plan", lambda self, total_steps: budgets.append(total_steps))
    make_loop(steps=1, epochs=3)
    make_loop(steps=7)
    assert budgets == [12, 7]


def test_early_stopping_on_the_main_metric():
    # lr 0 never improves: patience 2 stops after the third evaluation
    loop = make_loop({**OPTIM["sgd"], "lr": 1e-12}, steps=1000, eval_every=10, patience=2)
    result = loop.run()
    assert result.early_stopped and result.steps == 30


def test_gradient_clipping_bounds_the_update():
    loop = make_loop({**OPTIM["sgd"], "lr": 1.0, "momentum": 0.0}, steps=1, clip_grad_norm=1e-3)
    before = [p.detach().clone() for p in loop.params]
    loop.run()
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(loop.params, before)]).norm()
    assert moved.item() == pytest.approx(1e-3, rel=1e-4)


def test_logged_gradient_norm_is_the_peak_since_the_previous_log():
    loop = make_loop(steps=20, clip_grad_norm=1e-2)
    loop.logger = RecordingLogger()
    norms, grad_norm = [], loop._grad_norm
    loop._grad_norm = lambda: norms.append(grad_norm()) or norms[-1]
    loop.run()
    assert len(norms) == 20 and max(norms) > 1e-2  # the norms before clipping, not the clipped 1e-2
    for step in (10, 20):  # log_every 10
        window = torch.stack(norms[step - 10 : step])
        assert loop.logger.scalars_at[step]["grad/norm_max"] == pytest.approx(window.max().item())


def test_nonfinite_gradient_names_the_group():
    loop = make_loop(steps=3)
    loop.task.loss = lambda step: {"fit": (loop.task.rot.sqrt()).sum()}  # sqrt(0) has an infinite gradient
    with pytest.raises(NonFiniteError, match=r"non-finite gradient at step 0 in parameter group\(s\) \['rotation'\]"):
        loop.run()


def test_missing_main_metric_is_reported():
    loop = make_loop(steps=1)
    loop.task.evaluate = lambda: {"other": 1.0}
    with pytest.raises(KeyError, match="did not return its main metric 'rot_err_deg'"):
        loop.run()
