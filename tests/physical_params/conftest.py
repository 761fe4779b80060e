"""Run physical_params in-process: compose the config as `dwx run` does and drive the runner's loop."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from runner.logging import NullLogger
from runner.loop import Loop
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
    return task, Loop.from_config(cfg, task, NullLogger()).run().metrics


@pytest.fixture
def fit_scene():
    return fit
