"""Metrics of a reconstructed mesh against the ground truth: thin wrappers over runner.geometry.

``iou_3d`` voxelises both meshes at 32^3 over the unit cube as NMR (Kato et al., CVPR 2018) and SoftRas
(Liu et al., ICCV 2019) evaluate: every voxel the surface passes through or encloses
(``runner.geometry.voxelize``, method ``enclosed``). ``iou_3d_parity`` counts only the voxels whose
centres lie inside (exact for closed meshes, stricter on thin parts, and blind where a predicted surface
folds through itself); the two differ most on thin shapes. ``chamfer`` and ``fscore`` (at 0.01) compare points sampled
uniformly on both surfaces; ``silhouette_iou`` compares binary silhouettes at given views.
"""

from __future__ import annotations

import torch
from torch import Tensor

from runner.geometry import mesh_metrics
from runner.geometry.meshes import Meshes
from runner.geometry.sampling import sample_points
from runner.geometry.voxelize import voxel_iou, voxelize

VOXEL_RESOLUTION = 32
IOU_METRICS = {"iou_3d": "enclosed", "iou_3d_parity": "parity"}  # metric -> voxelize method; the first is the main one
FSCORE_THRESHOLD = 0.01


def voxels(meshes: Meshes, resolution: int = VOXEL_RESOLUTION) -> Tensor:
    """(2, R, R, R) bool occupancy over the unit cube [-0.5, 0.5]^3 of the union of the closed meshes of a
    batch (one mesh, or the overlapping parts of one object), once per method of ``IOU_METRICS``."""
    return torch.stack([voxelize(meshes, resolution, method=m).any(0) for m in IOU_METRICS.values()])


def iou_3d(pred: Meshes, gt_voxels: Tensor) -> dict[str, float]:
    """``iou_3d`` and ``iou_3d_parity`` of the predicted mesh against ground-truth :func:`voxels` (2, R, R, R)."""
    ious = voxel_iou(voxels(pred, gt_voxels.shape[-1]), gt_voxels)
    return {name: float(iou) for name, iou in zip(IOU_METRICS, ious)}


def surface_metrics(pred: Meshes, gt: Meshes, num_points: int, seed: int) -> dict[str, float]:
    """``chamfer`` (mean squared nearest-neighbour distance, both ways) and ``fscore`` at 0.01.

    Both surfaces are sampled with generators seeded alike, so repeated evaluations are comparable and
    a mesh against itself scores exactly 0 and 1. With distinct meshes the sampling gap biases the
    F-score down: ``num_points`` should make the mean point spacing well below 0.01.
    """
    p = sample_points(pred, num_points, generator=torch.Generator().manual_seed(seed))
    q = sample_points(gt, num_points, generator=torch.Generator().manual_seed(seed))
    return {"chamfer": float(mesh_metrics.chamfer_distance(p, q)[0]),
            "fscore": float(mesh_metrics.fscore(p, q, FSCORE_THRESHOLD)[0])}


def silhouette_iou(alpha: Tensor, mask: Tensor) -> float:
    """Mean IoU of binary silhouettes (``> 0.5``) over a batch: alpha, mask (B, H, W)."""
    a, m = alpha > 0.5, mask > 0.5
    inter = (a & m).flatten(1).sum(1).float()
    union = (a | m).flatten(1).sum(1).float().clamp(min=1)
    return float((inter / union).mean())


def color_error(rgb: Tensor, target: Tensor, mask: Tensor) -> float:
    """Mean absolute colour error over the target's object pixels (``mask > 0.5``), in [0, 1].

    Args:
        rgb: (B, H, W, 3) rendered images; target: (B, H, W, 3) the images fitted; mask: (B, H, W) their silhouettes.
    """
    inside = (mask > 0.5)[..., None].float()
    return float(((rgb - target).abs() * inside).sum() / (3 * inside.sum()).clamp(min=1))
