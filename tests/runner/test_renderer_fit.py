"""A task runs on any renderer that draws the scene type it renders; another is refused by name, before any work."""

from __future__ import annotations

import pytest
from hydra.utils import get_class

from runner.cli import CONFIG_DIR
from runner.errors import ConfigError
from runner.listing import option_targets
from runner.validation import validate
from tests.conftest import compose_config

RENDERERS = option_targets(CONFIG_DIR, "renderer")
TASKS = {
    "depth_from_video": "experiment=depth_tiny",
    "physical_params": "experiment=physics_tiny",
    "single_view_recon": "experiment=recon_tiny_fit",
}


@pytest.mark.parametrize("renderer", sorted(RENDERERS))
@pytest.mark.parametrize("task", sorted(TASKS))
def test_each_renderer_serves_the_tasks_whose_scenes_it_draws(task, renderer):
    cfg = compose_config([f"task={task}", TASKS[task], f"renderer={renderer}"])
    renders = get_class(cfg.task._target_).renders
    if renders in get_class(RENDERERS[renderer]).draws:
        validate(cfg)
        return
    fitting = [name for name, target in RENDERERS.items() if renders in get_class(target).draws]
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    assert str(error.value) == (
        f"renderer={renderer} cannot serve task {cfg.task._target_.rsplit('.', 1)[-1]}, which needs {renders}: "
        f"choose {' or '.join(f'renderer={name}' for name in fitting)}"
    )


def test_every_renderer_draws_something_a_task_or_the_data_renders():
    assert {next(iter(get_class(t).draws)) for t in RENDERERS.values()} == {"meshes", "points", "primitives"}
