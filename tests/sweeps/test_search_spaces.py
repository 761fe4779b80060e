"""Each task's Optuna search space composes, optimises the task's main metric in its direction, and
names only keys that exist in the task's config."""

from __future__ import annotations

import importlib

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from runner.cli import CONFIG_DIR

TASKS = sorted(p.stem for p in (CONFIG_DIR / "hparams_search").glob("*.yaml"))


def test_every_task_has_a_search_space():
    assert {"physical_params", "depth_from_video", "single_view_recon"} <= set(TASKS)


@pytest.mark.parametrize("task", TASKS)
def test_search_space_keys_exist_and_direction_follows_the_task(task):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name="config", overrides=[f"task={task}", f"hparams_search={task}"], return_hydra_config=True
        )
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("ResumableOptunaSweeper")
    assert sweeper.storage == f"sqlite:///{cfg.hydra.sweep.dir}/optuna.db" and sweeper.study_name == task
    for key in sweeper.params:
        assert OmegaConf.select(cfg, key, default="<missing>") != "<missing>", f"{task}: no key {key}"
    module, _, name = cfg.task._target_.rpartition(".")
    task_class = getattr(importlib.import_module(module), name)
    assert sweeper.direction == {"min": "minimize", "max": "maximize"}[task_class.mode]
