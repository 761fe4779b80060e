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


def matrix_to_axis_angle(R: Tensor) -> Tensor:
    """(..., 3, 3) rotation -> (..., 3) axis-angle (angle in [0, pi])."""
    q = matrix_to_quaternion(R)
    return quaternion_to_axis_angle(q)


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """(..., 4) quaternion (w, x, y, z), normalised here -> (..., 3, 3) rotation."""
    q = torch.nn.functional.normalize(q, dim=-1)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(R: Tensor) -> Tensor:
    """(..., 3, 3) rotation -> (..., 4) unit quaternion (w, x, y, z) with w >= 0 (Shepperd's method)."""
    m = R
    diag = torch.stack([
        1 + m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2],
        1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
        1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
        1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2],
    ], -1)
    r = torch.sqrt(diag.clamp(min=1e-12))  # 2 * |component|
    candidates = torch.stack([
        torch.stack([r[..., 0] ** 2, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                     m[..., 1, 0] - m[..., 0, 1]], -1) / (2 * r[..., 0:1]),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], r[..., 1] ** 2, m[..., 1, 0] + m[..., 0, 1],
                     m[..., 0, 2] + m[..., 2, 0]], -1) / (2 * r[..., 1:2]),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1], r[..., 2] ** 2,
                     m[..., 2, 1] + m[..., 1, 2]], -1) / (2 * r[..., 2:3]),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] + m[..., 1, 2],
                     r[..., 3] ** 2], -1) / (2 * r[..., 3:4]),
    ], -2)  # (..., 4, 4): row k is the estimate built from the k-th largest-candidate formula
    best = diag.argmax(-1)
    q = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = torch.nn.functional.normalize(q, dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_axis_angle(q: Tensor) -> Tensor:
    """(..., 4) unit quaternion (w, x, y, z) -> (..., 3) axis-angle."""
    q = torch.where(q[..., :1] < 0, -q, q)
    xyz = q[..., 1:]
    s = xyz.norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(s, q[..., :1])
    scale = torch.where(s < 1e-8, 2 / q[..., :1].clamp(min=1e-8), angle / s.clamp(min=1e-12))
    return xyz * scale


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
