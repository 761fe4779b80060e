"""Metric scale from one known length: the ground plane under the camera, or the distance travelled."""

from __future__ import annotations

import pytest
import torch

from runner.errors import ConfigError, InputError
from runner.geometry.cameras import PinholeCamera
from tasks.depth_from_video.metric_scale import (
    check_metric_hints,
    ground_height,
    path_length,
    scale_from_baseline,
    scale_from_camera_height,
)

H, W = 48, 96


def _ground_depth(height: float, pitch: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W) depth of a flat ground ``height`` below a camera pitched down by ``pitch`` [rad] (OpenCV frame, y down),
    with a far wall where the ray misses the ground, and its (3, 3) K."""
    K = PinholeCamera.intrinsics(60.0, 60.0, (W - 1) / 2, (H - 1) / 2)[0]
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    ray = torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)], -1)  # z = 1
    up = torch.tensor([0.0, -torch.cos(torch.tensor(pitch)), -torch.sin(torch.tensor(pitch))])  # world up, camera frame
    down = -(ray @ up)  # how fast each ray descends
    depth = torch.where(down > 1e-3, height / down.clamp(min=1e-3), torch.full_like(u, 50.0)).clamp(max=50.0)
    return depth, K


@pytest.mark.parametrize("height, pitch", [(1.65, 0.0), (0.4, 0.15), (12.0, 0.3)])
def test_the_ground_plane_gives_the_camera_height(height, pitch):
    depth, K = _ground_depth(height, pitch)
    assert ground_height(depth, K, torch.Generator().manual_seed(0)) == pytest.approx(height, rel=1e-3)
    # Depth known up to a scale of 1/4: the camera height puts it back in metres.
    assert scale_from_camera_height((depth / 4)[None].repeat(3, 1, 1), K, height) == pytest.approx(4.0, rel=1e-3)


def test_no_ground_is_a_clear_error():
    K = PinholeCamera.intrinsics(60.0, 60.0, (W - 1) / 2, (H - 1) / 2)[0]
    wall = torch.full((2, H, W), 5.0)  # a fronto-parallel wall: no plane facing the camera's up axis
    with pytest.raises(InputError, match="no frame shows a flat ground .* give data.baseline_m instead"):
        scale_from_camera_height(wall, K, 1.5)


def test_the_distance_travelled_gives_the_scale():
    # A camera moving 0.5 fit units per frame along a bent path, with turns: path length 0.5 * 4.
    steps = [torch.tensor([0.0, 0.0, 0.5]), torch.tensor([0.5, 0.0, 0.0]), torch.tensor([0.0, 0.3, 0.4]),
             torch.tensor([0.0, 0.0, 0.5])]
    centres = torch.cumsum(torch.stack([torch.zeros(3), *steps]), 0)
    R = torch.linalg.matrix_exp(torch.tensor([[0.0, -0.2, 0.1], [0.2, 0.0, -0.3], [-0.1, 0.3, 0.0]]))  # any turn
    poses = torch.eye(4).repeat(5, 1, 1)
    poses[:, :3, :3] = R
    poses[:, :3, 3] = -(centres @ R.T)  # cam_from_first: t = -R c
    assert path_length(poses) == pytest.approx(2.0, rel=1e-5)
    assert scale_from_baseline(poses, 7.0) == pytest.approx(3.5, rel=1e-5)
    with pytest.raises(InputError, match="did not move"):
        scale_from_baseline(torch.eye(4).repeat(3, 1, 1), 1.0)


@pytest.mark.parametrize("height, baseline, message", [(1.0, 2.0, "not both"), (-1.0, None, "camera_height must be"),
                                                        (None, 0.0, "baseline_m must be")])
def test_bad_hints_are_refused(height, baseline, message):
    with pytest.raises(ConfigError, match=message):
        check_metric_hints(height, baseline)
