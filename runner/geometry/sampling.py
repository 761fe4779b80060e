"""Uniform random sampling of points on mesh surfaces."""

from __future__ import annotations

import torch
from torch import Tensor

from runner.geometry.meshes import Meshes


def sample_points(meshes: Meshes, n: int, generator: torch.Generator | None = None,
                  return_normals: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Sample points uniformly with respect to surface area on each mesh of a batch.

    A face is drawn with probability proportional to its area, then a point inside it with the
    square-root barycentric warp ``(1 - sqrt(r1), sqrt(r1) (1 - r2), sqrt(r1) r2)``, which is uniform
    over the triangle (Osada et al., "Shape distributions", ACM TOG 2002, eq. 1). The face choice and
    the barycentric weights are random but constant, so the points are differentiable w.r.t. the
    vertices, as needed for a Chamfer loss on a deforming mesh (Wang et al., Pixel2Mesh, ECCV 2018).

    Args:
        meshes: B meshes, each with at least one face of non-zero area.
        n: number of points per mesh, >= 1.
        generator: optional torch generator on the meshes' device, for reproducible samples.
        return_normals: also return the unit normal of the face each point lies on.
    Returns:
        points (B, n, 3) [scene units], and, with ``return_normals``, normals (B, n, 3).
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"number of samples n must be an int >= 1, got {n!r}")
    counts = meshes.num_faces_per_mesh
    if (counts == 0).any():
        raise ValueError(f"mesh {int(torch.argmax((counts == 0).int()))} has no faces; cannot sample its surface")
    tri = meshes.verts_packed[meshes.faces_packed]  # (F, 3 corners, 3)
    cross = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    areas = 0.5 * cross.detach().norm(dim=-1)
    B, F_max = len(meshes), int(counts.max())
    first = torch.cumsum(counts, 0) - counts  # packed index of each mesh's first face
    slot = torch.arange(areas.shape[0], device=areas.device) - first[meshes.face_to_mesh]
    weights = areas.new_zeros(B, F_max)
    weights[meshes.face_to_mesh, slot] = areas
    total = weights.sum(1)
    if not torch.isfinite(total).all() or (total <= 0).any():
        raise ValueError("every mesh needs a finite, non-zero surface area to be sampled; mesh "
                         f"{int(torch.argmax(((total <= 0) | ~torch.isfinite(total)).int()))} has none")
    face = torch.multinomial(weights, n, replacement=True, generator=generator) + first[:, None]  # (B, n) packed
    r = torch.rand(2, B, n, 1, generator=generator, device=areas.device, dtype=tri.dtype)
    s = r[0].sqrt()
    w0, w1, w2 = 1 - s, s * (1 - r[1]), s * r[1]
    corners = tri[face]  # (B, n, 3, 3)
    points = w0 * corners[..., 0, :] + w1 * corners[..., 1, :] + w2 * corners[..., 2, :]
    if not return_normals:
        return points
    return points, torch.nn.functional.normalize(cross[face], dim=-1)
