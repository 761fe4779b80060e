"""Coarse-to-fine template: a deformed icosphere subdivided 1-to-4 in the middle of a fit.

A first version of remeshing during optimisation (after Palfinger, "Continuous remeshing for inverse
rendering", 2022): uniform rather than edge-length driven. Level ``l + 1`` of
:func:`runner.geometry.primitives.icosphere` keeps the ``V_l`` vertices of level ``l`` first and appends one
vertex per unique edge, in the order of ``torch.unique`` over the sorted edges, so a mesh of any level keeps
its vertex indices when subdivided: parameters sized for the finest level serve every level through their
first ``V_l`` rows (:func:`level_size`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from runner.geometry.primitives import icosphere


def level_size(level: int) -> int:
    """Vertices of an icosphere of ``level`` subdivisions: ``10 * 4**level + 2``."""
    return 10 * 4**level + 2


def icosphere_faces(level: int, device: torch.device | str | None = None) -> Tensor:
    """(20 * 4**level, 3) int64 faces of ``icosphere(level)``."""
    return icosphere(level).faces[0].to(device)


def unique_edges(faces: Tensor) -> Tensor:
    """(F, 3) triangles -> (E, 2) unique undirected edges, sorted as icosphere subdivision orders its new
    vertices (one per edge, in this order)."""
    corners = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    return corners.sort(-1).values.unique(dim=0)


def subdivide(verts: Tensor, faces: Tensor, level: int) -> tuple[Tensor, Tensor]:
    """Split each triangle of a deformed level-``level`` icosphere into four at its edge midpoints.

    Args:
        verts: (..., V_l, 3) vertices (any leading batch dims) or per-vertex values (colours, logits).
        faces: (F_l, 3) faces of ``icosphere(level)``.
        level: the current level l.
    Returns:
        (..., V_{l+1}, 3) the old values followed by the mean of each edge's two ends, and the (4 F_l, 3)
        faces of ``icosphere(level + 1)``, which index them.
    """
    edges = unique_edges(faces)
    mid = 0.5 * (verts[..., edges[:, 0], :] + verts[..., edges[:, 1], :])
    return torch.cat([verts, mid], dim=-2), icosphere_faces(level + 1, faces.device)
