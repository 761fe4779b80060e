"""Run physical_params in-process: compose the config as `dwx run` does and drive the runner's loop."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from runner.logging import NullLogger
from runner.loop import Loop, LoopSettings, run_length
from runner.optim import build_optimizer, build_scheduler
from tests.conftest import compose_config


def compose_task(overrides: list[str]):
    return compose_config(["task=physical_params", "loop.progress=off", *overrides])


def fit(overrides: list[str]):
    """Compose, build, set up and run the task; returns (task, final metrics)."""
    cfg = compose_task(overrides)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(1)  # small tensors: one intra-op thread is fastest
    task = instantiate(cfg.task, _convert_="all")
    task.setup(torch.device("cpu"))
    optimizer = build_optimizer(cfg.optim, task.param_groups())
    settings = LoopSettings.from_config(cfg.loop)
    scheduler = build_scheduler(cfg.scheduler, optimizer, run_length(settings, task))
    loop = Loop(task, optimizer, scheduler, NullLogger(), settings)
    return task, loop.run().metrics


@pytest.fixture
def fit_scene():
    return fit
