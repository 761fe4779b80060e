"""A task runs on any renderer that draws the scene type it renders; another is refused by name, before any work.

Every pair `dwx list renderer` x the tasks is tried: a pair that fits runs two steps of the task's tiny
experiment through the runner's loop; a pair that does not is refused by validation with one line naming the
renderers that fit. A key the chosen renderer does not take (another renderer's setting, a typo) is refused too.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from hydra.utils import get_class, instantiate

from runner.cli import CONFIG_DIR
from runner.errors import ConfigError, find_user_error
from runner.listing import option_targets
from runner.logging import NullLogger
from runner.loop import Loop
from runner.validation import chosen_groups, validate
from tests.conftest import compose_config, missing_tool

RENDERERS = option_targets(CONFIG_DIR, "renderer")
TASKS = {
    "depth_from_video": "experiment=depth_tiny",
    "physical_params": "experiment=physics_tiny",
    "single_view_recon": "experiment=recon_tiny_fit",
}


def _renderer_class(name: str) -> type:
    """The class of ``renderer=<name>``; an optional renderer that is not installed skips (fails under CI)."""
    try:
        return get_class(RENDERERS[name])
    except ImportError as error:
        missing_tool(f"renderer={name} is not installed ({error.__cause__ or error})")


def _fitting(renders: str) -> list[str]:
    return [name for name in RENDERERS if renders in _renderer_class(name).draws]


@pytest.mark.parametrize("renderer", sorted(RENDERERS))
@pytest.mark.parametrize("task", sorted(TASKS))
def test_each_renderer_serves_the_tasks_whose_scenes_it_draws(task, renderer, tmp_path, monkeypatch):
    overrides = [f"task={task}", TASKS[task], f"renderer={renderer}", "loop.steps=2", "loop.eval_every=2",
                 "loop.progress=off"]
    if task == "single_view_recon" and "sigma" not in inspect.signature(_renderer_class(renderer)).parameters:
        overrides.append("~renderer.sigma")  # recon's tiny experiment sharpens soft_mesh's blur
    cfg = compose_config(overrides)
    renders = get_class(cfg.task._target_).renders
    if renders not in _renderer_class(renderer).draws:
        with pytest.raises(ConfigError) as error:
            validate(cfg)
        assert str(error.value) == (
            f"renderer={renderer} cannot serve task {cfg.task._target_.rsplit('.', 1)[-1]}, which needs {renders}: "
            f"choose {' or '.join(f'renderer={name}' for name in _fitting(renders))}"
        )
        return
    validate(cfg)
    monkeypatch.setenv("DWX_CACHE", str(tmp_path / "cache"))  # depth's tiny streets, drawn by this renderer
    torch.manual_seed(cfg.seed)
    task_ = instantiate(cfg.task, _convert_="all")
    task_.setup(torch.device("cpu"))
    result = Loop.from_config(cfg, task_, NullLogger()).run()
    assert result.steps == 2 and all(v == v for v in result.metrics.values())  # finite, no NaN


def test_every_renderer_draws_something_a_task_renders_and_every_task_has_a_renderer():
    renders = {get_class(compose_config([f"task={task}"]).task._target_).renders for task in TASKS}
    assert renders == {"meshes", "points", "primitives"}
    draws = {name: _renderer_class(name).draws for name in RENDERERS}
    assert all(scenes & renders for scenes in draws.values()), draws
    assert renders <= frozenset().union(*draws.values())


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["task=single_view_recon", "experiment=recon_tiny_fit", "renderer=mitsuba"],
         "renderer.sigma is not a setting of renderer=mitsuba but of renderer=soft_mesh: remove it with "
         "~renderer.sigma or choose renderer=soft_mesh"),
        (["task=physical_params", "+renderer.sigmaa=1"],
         "renderer.sigmaa is not a setting of renderer=splat: remove it with ~renderer.sigmaa (its settings: "),
        (["task=physical_params", "scene=bouncing_ball", "physics=newton", "+physics.contact_tol=1e-5"],
         "physics.contact_tol is not a setting of physics=newton but of physics=rigid: remove it with "
         "~physics.contact_tol or choose physics=rigid"),
    ],
)
def test_a_key_the_chosen_backend_does_not_take_is_refused_by_name(overrides, message):
    for group, _, name in (o.partition("=") for o in overrides if o.startswith(("renderer=", "physics="))):
        try:
            get_class(option_targets(CONFIG_DIR, group)[name])
        except ImportError as error:
            missing_tool(f"{group}={name} is not installed ({error.__cause__ or error})")
    with pytest.raises(ConfigError) as error:
        validate(compose_config(overrides))
    assert str(error.value).startswith(message)


@pytest.mark.parametrize(
    "overrides, group",
    [
        (["task=single_view_recon", "physics=rigid"], "physics"),
        (["task=depth_from_video", "physics=rigid"], "physics"),
        (["task=single_view_recon", "mode=learn", "data=mesh"], "data"),  # learns from its embedded categories
        (["task=depth_from_video", "data=seven_scenes", "renderer=raycast"], "renderer"),  # the 7-Scenes are read
    ],
)
def test_a_backend_or_data_the_task_does_not_use_is_refused(overrides, group):
    with pytest.raises(ConfigError) as error:
        validate(compose_config(overrides), chosen_groups(overrides))
    task = overrides[0].split("=")[1]
    assert str(error.value) == (
        f"task={task} has no use for the {group}= override (nothing in its config refers to ${{{group}}}): remove it"
    )
    validate(compose_config(overrides[:-1]), chosen_groups(overrides[:-1]))  # without it: fine



@pytest.mark.parametrize(
    "overrides, takes",
    [
        (["task=single_view_recon", "data=streets"], "task=single_view_recon takes data=mesh or data=photo"),
        (["task=depth_from_video", "data=mesh", "data.path=thing.obj"], "task=depth_from_video takes a video"),
        (["task=depth_from_video", "mode=fit", "data=photo", "data.image=x.png"], "task=depth_from_video takes"),
        (["task=physical_params", "data=streets"], "task=physical_params takes its scene's generated video"),
    ],
)
def test_another_tasks_data_source_is_refused_when_the_task_is_built(overrides, takes):
    """Both tasks interpolate ${data}, so the choice passes validation; the task names what it reads."""
    with pytest.raises(Exception) as error:
        instantiate(compose_config(overrides).task, _convert_="all")
    cause = find_user_error(error.value)
    assert isinstance(cause, ConfigError) and str(cause).startswith(takes), error.value
    assert str(cause).endswith("is another task's data source")
