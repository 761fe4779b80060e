"""Sources chosen by parallax: the nearest frames on either side whose camera moved far enough at the target's depth."""

from __future__ import annotations

import pytest
import torch

from runner.errors import ConfigError
from tasks.depth_from_video.fit import FitVideo
from tasks.depth_from_video.parallax import baseline_parallax, parallax_sources
from tests.depth_from_video.test_fit import OneVideo, fit, street_video


def _sliding_camera(positions: list[float]) -> torch.Tensor:
    """(T, 4, 4) cam_from_first of a camera sliding along x through ``positions`` [m], looking along z."""
    poses = torch.eye(4).repeat(len(positions), 1, 1)
    poses[:, 0, 3] = -torch.tensor(positions)
    return poses


def test_parallax_is_focal_times_baseline_over_depth():
    poses = _sliding_camera([0.0, 0.1, 0.3])
    parallax = baseline_parallax(poses, focal=100.0, mean_depth=torch.tensor([10.0, 5.0, 2.0]))
    assert torch.allclose(parallax[0], torch.tensor([0.0, 1.0, 3.0]))
    assert torch.allclose(parallax[2], torch.tensor([15.0, 10.0, 0.0]))


def test_a_slow_camera_gets_far_sources_and_a_fast_one_near_ones():
    # a camera that creeps 1 cm per frame for 6 frames, then moves 50 cm per frame; depth 10 m, f 100 px:
    # 0.1 px per frame, then 5 px per frame
    positions = [0.01 * i for i in range(6)] + [0.05 + 0.5 * i for i in range(1, 5)]
    parallax = baseline_parallax(_sliding_camera(positions), 100.0, torch.full((len(positions),), 10.0))
    table = parallax_sources(parallax, [0.3, 4.0])
    assert table.shape == (10, 4)
    assert table[2].tolist() == [0, 5, 0, 6]  # creeping: 0.3 px is 3 frames away (fewer before: the first frame)
    assert table[8].tolist() == [7, 9, 7, 9]  # fast: the neighbours already move 5 px
    assert table[0].tolist() == [3, 3, 6, 6]  # frame 0: both slots from after it
    assert table[9].tolist() == [8, 8, 8, 8]  # the last frame: both slots from before it


def test_a_goal_no_frame_reaches_takes_the_farthest_frame():
    parallax = baseline_parallax(_sliding_camera([0.0, 0.001, 0.002]), 100.0, torch.ones(3))
    assert parallax_sources(parallax, [50.0])[1].tolist() == [0, 2]


@pytest.mark.parametrize("goals", [[], [0.0], [-1.0]])
def test_bad_goals_are_refused(goals):
    with pytest.raises(ConfigError, match="task.source_parallax"):
        FitVideo(OneVideo(street_video(3, (8, 24))), source_parallax=goals)


def test_a_fit_switches_to_sources_by_parallax_and_uses_them():
    task = FitVideo(OneVideo(street_video(6, (16, 48))), source_parallax=[1.0, 4.0], parallax_from=0.5)
    metrics = fit(task, steps=4)
    assert task.source_table is not None and task.source_table.shape == (6, 4)
    targets = torch.tensor([0, 5])
    assert [s.tolist() for s in task.sources(targets)] == task.source_table[targets].T.tolist()
    assert metrics["abs_rel"] == metrics["abs_rel"]  # finite
