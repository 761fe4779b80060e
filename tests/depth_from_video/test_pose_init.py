"""Aligning consecutive frames' rotations before a fit recovers a turning camera's rotations."""

from __future__ import annotations

import math

import pytest
import torch

from runner.errors import ConfigError
from runner.geometry.transforms import pose_vec_to_matrix
from tasks.depth_from_video.data import Sequence
from tasks.depth_from_video.fit import FitVideo
from tasks.depth_from_video.pose_init import align_rotations
from tests.depth_from_video.test_fit import OneVideo


def _sky(directions: torch.Tensor) -> torch.Tensor:
    """(..., 3) unit ray directions in the world -> (..., 3) colours in [0, 1] of a smooth, textured sky."""
    x, y, z = directions.unbind(-1)
    a = torch.sin(7 * x + 3 * y) * torch.cos(5 * y - 2 * z)
    b = torch.sin(4 * z + 6 * x) + 0.5 * torch.cos(9 * y)
    return torch.stack([0.5 + 0.4 * a, 0.5 + 0.3 * torch.tanh(b), 0.5 + 0.2 * a * b], -1).clamp(0, 1)


def _turning_camera(turns: torch.Tensor, H: int = 96, W: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames (T, 3, H, W) of a camera that only rotates, by ``turns`` (T - 1, 3) axis-angle ``cam_t_from_cam_t-1``,
    seeing a sky at infinity (so no depth enters); and K (3, 3)."""
    f = 0.5 * W / math.tan(math.radians(30))
    K = torch.tensor([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1.0]])
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    rays = torch.stack([u, v, torch.ones_like(u)], -1) @ torch.linalg.inv(K).T  # (H, W, 3) in the camera
    rays = rays / rays.norm(dim=-1, keepdim=True)
    cam_from_world = [torch.eye(3)]
    for R in pose_vec_to_matrix(turns, torch.zeros_like(turns))[:, :3, :3]:
        cam_from_world.append(R @ cam_from_world[-1])
    frames = [_sky(rays @ R) for R in cam_from_world]  # world direction = R^T d: row vectors times R
    return torch.stack(frames).permute(0, 3, 1, 2), K


def test_the_rotations_of_a_turning_camera_are_recovered():
    turns = torch.tensor([[0.0, 0.08, 0.0], [0.02, 0.06, 0.0], [0.0, 0.1, 0.03], [-0.03, 0.0, 0.0]])  # 1.7-6 deg
    frames, K = _turning_camera(turns)
    found = align_rotations(frames, K)  # at 1/4 of 96 x 128 pixels a pixel is 2 deg
    error = (found - turns).norm(dim=-1).rad2deg()
    assert error.max() < 0.5, f"rotation errors {error.tolist()} deg for turns of {turns.norm(dim=-1).rad2deg()}"


def test_a_fit_starts_from_the_aligned_rotations():
    turns = torch.tensor([[0.0, 0.08, 0.0], [0.0, 0.07, 0.02]])
    video = OneVideo(Sequence("turning", *_turning_camera(turns), None))
    aligned, rest = FitVideo(video), FitVideo(video, pose_init_steps=0)
    for task in (aligned, rest):
        task.setup(torch.device("cpu"))
    assert (aligned.path.rotation.detach() - turns).norm(dim=-1).max().rad2deg() < 0.5
    assert rest.path.rotation.abs().max() == 0
    with pytest.raises(ConfigError, match="task.pose_init_steps must be >= 0"):
        FitVideo(video, pose_init_steps=-1)
