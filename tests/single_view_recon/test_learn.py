"""mode=learn evaluation: per-category test IoU and the training split beside the test split."""

from __future__ import annotations

import pytest
import torch


def test_the_training_split_is_scored_on_the_first_objects_of_each_category(task):
    objects = task.first_per_category("train", 6)
    assert task.splits["train"]["category"][objects].tolist() == [0] * 6 + [1] * 6
    assert len(set(objects.tolist())) == 12


def test_evaluate_reports_each_category_and_the_training_split(task):
    with torch.no_grad():  # as the loop evaluates
        m = task.evaluate()
    assert {"iou_3d_car", "iou_3d_lamp", "train_iou_3d", "val_iou_3d", "baseline_iou_3d"} <= m.keys()
    assert 0 <= m["train_iou_3d"] <= 1
    # six test objects per category: the mean over objects is the mean of the two categories
    assert m["iou_3d"] == pytest.approx((m["iou_3d_car"] + m["iou_3d_lamp"]) / 2)
