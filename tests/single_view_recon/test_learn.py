"""mode=learn evaluation: per-category test IoU and the training split beside the test split."""

from __future__ import annotations

import pytest
import torch

from runner.errors import ConfigError
from runner.render.soft_mesh import SoftMeshRenderer
from tasks.single_view_recon.learn import LearnRecon
from tasks.single_view_recon.task import with_sigma


def tiny_untrained(**overrides) -> LearnRecon:
    """A one-category LearnRecon that is built but not set up (no data generated)."""
    return LearnRecon(SoftMeshRenderer(sigma=3e-3), SoftMeshRenderer(hard=True), {"image_size": 32, "azimuth": 8},
                      {"categories": ["car"], "train": 2, "val": 1, "test": 1, "seed": 0}, {"silhouette": 1.0},
                      template_level=1, **overrides)


def test_the_training_split_is_scored_on_the_first_objects_of_each_category(task):
    objects = task.first_per_category("train", 6)
    assert task.splits["train"]["category"][objects].tolist() == [0] * 6 + [1] * 6
    assert len(set(objects.tolist())) == 12


def test_evaluate_reports_each_category_and_the_training_split(task):
    with torch.no_grad():  # as the loop evaluates
        m = task.evaluate()
    assert {"iou_3d_car", "iou_3d_lamp", "iou_3d_parity", "train_iou_3d", "val_iou_3d", "baseline_iou_3d"} <= m.keys()
    assert 0 <= m["train_iou_3d"] <= 1
    # six test objects per category: the mean over objects is the mean of the two categories
    assert m["iou_3d"] == pytest.approx((m["iou_3d_car"] + m["iou_3d_lamp"]) / 2)


def test_sharpening_switches_the_training_sigma_at_its_step(task, monkeypatch):
    monkeypatch.setattr(task, "sharp_from_step", 5)
    monkeypatch.setattr(task, "sharp_renderer", with_sigma(task.renderer, 1e-4, "sharpen_sigma"))
    assert task.training_renderer(4).sigma == task.renderer.sigma == 3e-3
    assert task.training_renderer(5).sigma == task.training_renderer(9).sigma == 1e-4
    # the same predictions, rendered sharper: a different training loss
    blurry, sharp = task.loss(4)["silhouette"], task.loss(5)["silhouette"]
    monkeypatch.setattr(task, "sharp_from_step", None)
    assert task.loss(5)["silhouette"] != sharp
    assert torch.isfinite(blurry) and torch.isfinite(sharp)


def test_sharpening_starts_at_its_fraction_of_the_run():
    task = tiny_untrained(sharpen_from=0.9, sharpen_sigma=1e-4)
    task.plan(9000)  # the loop's call with the run's length: loop.steps, or loop.epochs x an epoch
    assert task.training_renderer(8099).sigma == 3e-3 and task.training_renderer(8100).sigma == 1e-4
    task.plan(1000)
    assert task.training_renderer(899).sigma == 3e-3 and task.training_renderer(900).sigma == 1e-4


@pytest.mark.parametrize("overrides, message", [
    ({"sharpen_from": 0.9}, "come together"),
    ({"sharpen_sigma": 1e-4}, "come together"),
    ({"sharpen_from": 1.5, "sharpen_sigma": 1e-4}, "come together"),
    ({"sharpen_from": 0.9, "sharpen_sigma": 0.0}, "sharpen_sigma needs"),
    ({"refine_sigma": -1.0, "refine_steps": 5}, "refine_sigma needs"),
])
def test_bad_sigma_phases_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_untrained(**overrides)
