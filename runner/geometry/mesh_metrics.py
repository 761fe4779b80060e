"""Reconstruction metrics between point clouds sampled on surfaces, and volumetric IoU between meshes.

Nearest neighbours are found by brute force in chunks of query points (``torch.cdist`` on at most
``chunk_elements`` pairs at a time), so 10k x 10k clouds need ~40 MB, not 400 MB. The distances
themselves are recomputed from the matched pairs, which keeps them exact and differentiable with
clean gradients (also at zero distance).
"""

from __future__ import annotations

import torch
from torch import Tensor

from runner.geometry.meshes import Meshes
from runner.geometry.voxelize import voxel_iou, voxelize

_CHUNK_ELEMENTS = 1 << 23  # query x reference pairs per cdist call (32 MB in float32)


def nearest_neighbors(queries: Tensor, reference: Tensor, chunk_elements: int = _CHUNK_ELEMENTS) -> Tensor:
    """Index of the nearest reference point of each query point (Euclidean), by chunked brute force.

    Args:
        queries: (B, N, 3).
        reference: (B, M, 3), M >= 1.
        chunk_elements: upper bound on B x chunk x M distances held in memory at once.
    Returns:
        (B, N) int64 indices into ``reference``; not differentiable (indices).
    """
    _check_clouds(queries, reference)
    B, N, _ = queries.shape
    M = reference.shape[1]
    chunk = max(1, chunk_elements // max(1, B * M))
    q, r = queries.detach(), reference.detach()
    return torch.cat([torch.cdist(q[:, i:i + chunk], r).argmin(-1) for i in range(0, N, chunk)], 1)


def chamfer_distance(points_a: Tensor, points_b: Tensor) -> Tensor:
    """Symmetric Chamfer distance with SQUARED Euclidean distances, as PyTorch3D's ``chamfer_distance``.

    ``CD(A, B) = mean_{a in A} min_{b in B} |a - b|^2 + mean_{b in B} min_{a in A} |a - b|^2``
    (Fan et al., "A point set generation network", CVPR 2017). Its unit is scene units squared; take
    ``sqrt`` of each term for a distance in scene units.

    Args:
        points_a: (B, N, 3).
        points_b: (B, M, 3).
    Returns:
        (B,) differentiable w.r.t. both clouds.
    """
    a_to_b = _matched_sq_dist(points_a, points_b)
    b_to_a = _matched_sq_dist(points_b, points_a)
    return a_to_b.mean(1) + b_to_a.mean(1)


def fscore(points_pred: Tensor, points_gt: Tensor, threshold: float = 0.01) -> Tensor:
    """F-score at distance ``threshold`` (Tatarchenko et al., "What do single-view 3D reconstruction networks
    learn?", CVPR 2019; Knapitsch et al., Tanks and Temples, 2017).

    Precision is the fraction of predicted points closer than ``threshold`` (not squared, scene units) to the
    ground truth, recall the fraction of ground-truth points closer than it to the prediction, and
    ``F = 2 P R / (P + R)`` (0 when both are 0).

    Args:
        points_pred: (B, N, 3) points sampled on the prediction.
        points_gt: (B, M, 3) points sampled on the ground truth.
        threshold: distance [scene units], > 0.
    Returns:
        (B,) in [0, 1]; not differentiable.
    """
    if threshold <= 0:
        raise ValueError(f"fscore threshold must be > 0, got {threshold}")
    with torch.no_grad():
        precision = (_matched_sq_dist(points_pred, points_gt).sqrt() < threshold).float().mean(1)
        recall = (_matched_sq_dist(points_gt, points_pred).sqrt() < threshold).float().mean(1)
        denom = precision + recall
        return torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(denom))


def normal_consistency(points_pred: Tensor, normals_pred: Tensor, points_gt: Tensor, normals_gt: Tensor) -> Tensor:
    """Normal consistency of two oriented point clouds (Mescheder et al., Occupancy Networks, CVPR 2019).

    The mean absolute cosine between each point's normal and the normal of its nearest neighbour in
    the other cloud, averaged over both directions; 1 means identical orientation everywhere. The
    absolute value makes it blind to flipped faces (as in the paper).

    Args:
        points_pred: (B, N, 3) and normals_pred (B, N, 3), e.g. from ``sample_points(..., return_normals=True)``.
        points_gt: (B, M, 3) and normals_gt (B, M, 3).
    Returns:
        (B,) in [0, 1], differentiable w.r.t. the normals.
    """
    if normals_pred.shape != points_pred.shape or normals_gt.shape != points_gt.shape:
        raise ValueError(f"normals must match their points: {tuple(normals_pred.shape)} vs "
                         f"{tuple(points_pred.shape)}, {tuple(normals_gt.shape)} vs {tuple(points_gt.shape)}")
    n_pred = torch.nn.functional.normalize(normals_pred, dim=-1)
    n_gt = torch.nn.functional.normalize(normals_gt, dim=-1)
    to_gt = _gather(n_gt, nearest_neighbors(points_pred, points_gt))
    to_pred = _gather(n_pred, nearest_neighbors(points_gt, points_pred))
    cos_pred = (n_pred * to_gt).sum(-1).abs().mean(1)
    cos_gt = (n_gt * to_pred).sum(-1).abs().mean(1)
    return 0.5 * (cos_pred + cos_gt)


def iou_3d(meshes_a: Meshes, meshes_b: Meshes, resolution: int = 32,
           bounds: tuple[float, float] = (-0.5, 0.5), method: str = "parity") -> Tensor:
    """Volumetric IoU of two batches of (closed) meshes on a ``resolution``^3 grid over ``bounds``^3.

    Both are voxelised by :func:`runner.geometry.voxelize.voxelize` with ``method``: ``parity`` (voxel
    centres inside) or ``enclosed`` (the voxels the surface touches or encloses, as NMR/SoftRas evaluate
    ShapeNet reconstructions at 32^3 in the unit cube). Returns (B,) in [0, 1]; not differentiable.
    """
    if len(meshes_a) != len(meshes_b):
        raise ValueError(f"batch sizes differ: {len(meshes_a)} and {len(meshes_b)} meshes")
    return voxel_iou(voxelize(meshes_a, resolution, bounds, method), voxelize(meshes_b, resolution, bounds, method))


def _matched_sq_dist(queries: Tensor, reference: Tensor) -> Tensor:
    """(B, N) squared distance from each query to its nearest reference point (differentiable)."""
    nearest = _gather(reference, nearest_neighbors(queries, reference))
    return ((queries - nearest) ** 2).sum(-1)


def _gather(values: Tensor, index: Tensor) -> Tensor:
    """values (B, M, C) at index (B, N) -> (B, N, C)."""
    return torch.gather(values, 1, index[..., None].expand(-1, -1, values.shape[-1]))


def _check_clouds(a: Tensor, b: Tensor) -> None:
    if a.dim() != 3 or b.dim() != 3 or a.shape[-1] != 3 or b.shape[-1] != 3:
        raise ValueError(f"point clouds must be (B, N, 3), got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"batch sizes differ: {a.shape[0]} and {b.shape[0]}")
    if a.shape[1] == 0 or b.shape[1] == 0:
        raise ValueError(f"point clouds must not be empty, got {tuple(a.shape)} and {tuple(b.shape)}")
