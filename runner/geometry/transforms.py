"""Rigid transforms and rotation parameterisations (batched, differentiable)."""

from __future__ import annotations

import torch
from torch import Tensor


def transform_points(M: Tensor, points: Tensor) -> Tensor:
    """Apply homogeneous transforms ``M (B, 4, 4)`` to ``points (B, N, 3)``; returns (B, N, 3)."""
    return points @ M[..., :3, :3].transpose(-1, -2) + M[..., None, :3, 3]


def invert_rigid(M: Tensor) -> Tensor:
    """Inverse of rigid transforms ``M (..., 4, 4)`` without a general matrix inverse."""
    R_t = M[..., :3, :3].transpose(-1, -2)
    t = -(R_t @ M[..., :3, 3:4])
    out = torch.zeros_like(M)
    out[..., :3, :3] = R_t
    out[..., :3, 3:4] = t
    out[..., 3, 3] = 1.0
    return out


def axis_angle_to_matrix(axis_angle: Tensor, eps: float = 1e-8) -> Tensor:
    """Rodrigues' formula: (..., 3) axis * angle [rad] -> (..., 3, 3) rotation; smooth at angle 0."""
    theta2 = (axis_angle * axis_angle).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    theta = torch.sqrt(theta2 + eps * eps)
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    Kx = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*axis_angle.shape[:-1], 3, 3)
    # sin(t)/t and (1 - cos t)/t^2 with Taylor expansions near 0 to keep gradients finite.
    small = theta2 < 1e-6
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / (theta * theta))
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand_as(Kx)
    return eye + a * Kx + b * (Kx @ Kx)


def quaternion_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product of (..., 4) quaternions (w, x, y, z): the rotation ``b`` followed by ``a``."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], -1)


def pose_vec_to_matrix(axis_angle: Tensor, translation: Tensor) -> Tensor:
    """(B, 3) axis-angle and (B, 3) translation -> (B, 4, 4) rigid transform ``x -> R x + t``."""
    R = axis_angle_to_matrix(axis_angle)
    top = torch.cat([R, translation.unsqueeze(-1)], dim=-1)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)
