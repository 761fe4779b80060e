"""Closed triangle-mesh primitives (icosphere, box, cylinder/frustum, ellipsoid, plane) and part joining.

Every solid is closed (each edge shared by exactly two faces), shares its vertices between faces and
has counter-clockwise faces seen from outside (right-hand normals point outwards), the convention of
:class:`runner.geometry.meshes.Meshes`. Procedural shape categories (chairs, tables, lamps, ...) are
assembled from these parts with :func:`join_meshes`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from runner.geometry.meshes import Meshes

_PHI = (1.0 + math.sqrt(5.0)) / 2.0
# The regular icosahedron: 12 vertices (0, ±1, ±phi) and cyclic permutations; 20 outward CCW faces.
_ICO_VERTS = (
    (-1, _PHI, 0), (1, _PHI, 0), (-1, -_PHI, 0), (1, -_PHI, 0),
    (0, -1, _PHI), (0, 1, _PHI), (0, -1, -_PHI), (0, 1, -_PHI),
    (_PHI, 0, -1), (_PHI, 0, 1), (-_PHI, 0, -1), (-_PHI, 0, 1),
)
_ICO_FACES = (
    (0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11),
    (1, 5, 9), (5, 11, 4), (11, 10, 2), (10, 7, 6), (7, 1, 8),
    (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9),
    (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1),
)
# Box corners are indexed by the bits (x > 0, y > 0, z > 0) = (4, 2, 1); quads are listed cyclically.
_BOX_QUADS = ((0, 1, 3, 2), (4, 5, 7, 6), (0, 1, 5, 4), (2, 3, 7, 6), (0, 2, 6, 4), (1, 3, 7, 5))
_AXES = {"x": 0, "y": 1, "z": 2}


def icosphere(level: int, device=None, dtype: torch.dtype = torch.float32) -> Meshes:
    """Unit sphere from an icosahedron subdivided ``level`` times (Loop-style 1-to-4 split, projected).

    Each subdivision inserts one vertex per unique edge (at its midpoint, pushed onto the sphere) and
    splits every triangle into four, so ``V = 10 * 4**level + 2`` and ``F = 20 * 4**level``
    (level 3: 642 / 1280, level 5: 10242 / 20480).

    Args:
        level: number of subdivisions, >= 0.
        device: torch device of the result.
        dtype: floating dtype of the vertices (built in float64, then cast).
    Returns:
        A single-mesh :class:`Meshes` with unit-norm vertices and outward CCW faces.
    """
    if not isinstance(level, int) or level < 0:
        raise ValueError(f"icosphere level must be an int >= 0, got {level!r}")
    verts = torch.nn.functional.normalize(torch.tensor(_ICO_VERTS, dtype=torch.float64), dim=-1)
    faces = torch.tensor(_ICO_FACES, dtype=torch.int64)
    for _ in range(level):
        verts, faces = _subdivide(verts, faces)
        verts = torch.nn.functional.normalize(verts, dim=-1)
    return Meshes([verts.to(device=device, dtype=dtype)], [faces.to(device)])


def _subdivide(verts: Tensor, faces: Tensor) -> tuple[Tensor, Tensor]:
    """One 1-to-4 midpoint subdivision of (V, 3) verts and (F, 3) faces, vectorised over unique edges."""
    V, F = verts.shape[0], faces.shape[0]
    corner_edges = torch.stack([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 1)  # (F, 3, 2)
    edges, edge_of = torch.unique(corner_edges.reshape(-1, 2).sort(-1).values, dim=0, return_inverse=True)
    midpoints = 0.5 * (verts[edges[:, 0]] + verts[edges[:, 1]])
    m = (edge_of.reshape(F, 3) + V)  # m[:, 0] on edge (0, 1), m[:, 1] on (1, 2), m[:, 2] on (2, 0)
    a, b, c = faces.unbind(-1)
    ab, bc, ca = m.unbind(-1)
    new_faces = torch.cat([
        torch.stack([a, ab, ca], -1), torch.stack([b, bc, ab], -1),
        torch.stack([c, ca, bc], -1), torch.stack([ab, bc, ca], -1),
    ], 0)
    return torch.cat([verts, midpoints], 0), new_faces


def box(size: Sequence[float] | float = 1.0, center: Sequence[float] = (0.0, 0.0, 0.0), device=None,
        dtype: torch.dtype = torch.float32) -> Meshes:
    """Axis-aligned box: 8 shared corners, 12 outward CCW triangles.

    Args:
        size: edge lengths (sx, sy, sz) [scene units], each > 0, or one length for a cube.
        center: (3,) centre [scene units].
    """
    size_t = _vec3(size, "size", device, dtype)
    if (size_t <= 0).any():
        raise ValueError(f"box size must be > 0 along every axis, got {size_t.tolist()}")
    bits = torch.tensor([[(i >> 2) & 1, (i >> 1) & 1, i & 1] for i in range(8)], device=device, dtype=dtype)
    verts = _vec3(center, "center", device, dtype) + (bits - 0.5) * size_t
    q = torch.tensor(_BOX_QUADS, device=device)
    faces = torch.cat([q[:, [0, 1, 2]], q[:, [0, 2, 3]]], 0)
    return Meshes([verts], [_orient_outward(verts, faces, verts.mean(0))])


def cylinder(radius: float = 0.5, height: float = 1.0, segments: int = 32,
             center: Sequence[float] = (0.0, 0.0, 0.0), axis: str = "y", radius_top: float | None = None,
             device=None, dtype: torch.dtype = torch.float32) -> Meshes:
    """Closed cylinder (or frustum of a cone) with flat caps, ``2 * segments + 2`` verts, ``4 * segments`` faces.

    Args:
        radius: radius at the bottom (the ``-axis`` end) [scene units], > 0.
        height: length along ``axis`` [scene units], > 0.
        segments: number of sides of the polygonal cross-section, >= 3.
        center: (3,) centre of the axis segment [scene units].
        axis: "x", "y" or "z", the direction from the bottom cap to the top cap.
        radius_top: radius at the top cap, > 0 (a lamp shade or a tapered leg); None means ``radius``.
    """
    radius_top = radius if radius_top is None else radius_top
    if radius <= 0 or radius_top <= 0 or height <= 0:
        raise ValueError(f"cylinder needs radius, radius_top, height > 0, got {radius}, {radius_top}, {height}")
    if not isinstance(segments, int) or segments < 3:
        raise ValueError(f"cylinder segments must be an int >= 3, got {segments!r}")
    if axis not in _AXES:
        raise ValueError(f"cylinder axis must be one of {sorted(_AXES)}, got {axis!r}")
    s = segments
    theta = torch.arange(s, dtype=torch.float64) * (2 * math.pi / s)
    ring = torch.stack([torch.cos(theta), torch.zeros_like(theta), torch.sin(theta)], -1)  # local y is the axis
    half = torch.tensor([0.0, height / 2, 0.0], dtype=torch.float64)
    local = torch.cat([radius * ring - half, radius_top * ring + half, -half[None], half[None]], 0)
    k = torch.arange(s)
    k1 = (k + 1) % s
    bottom, top = torch.full_like(k, 2 * s), torch.full_like(k, 2 * s + 1)
    faces = torch.cat([
        torch.stack([k, k1, s + k1], -1), torch.stack([k, s + k1, s + k], -1),  # sides
        torch.stack([bottom, k1, k], -1), torch.stack([top, s + k, s + k1], -1),  # caps
    ], 0)
    shift = (_AXES[axis] - 1) % 3  # a cyclic permutation of coordinates is a rotation: local y -> axis
    verts = torch.roll(local, shifts=shift, dims=-1).to(device=device, dtype=dtype)
    verts = verts + _vec3(center, "center", device, dtype)
    return Meshes([verts], [_orient_outward(verts, faces.to(device), verts[2 * s:].mean(0))])


def ellipsoid(radii: Sequence[float] | float = 1.0, center: Sequence[float] = (0.0, 0.0, 0.0), level: int = 3,
              device=None, dtype: torch.dtype = torch.float32) -> Meshes:
    """Axis-aligned ellipsoid: an :func:`icosphere` of ``level`` scaled by ``radii`` and moved to ``center``.

    Args:
        radii: semi-axes (rx, ry, rz) [scene units], each > 0, or one radius for a sphere.
        center: (3,) centre [scene units].
        level: icosphere subdivision level (its vertex density).
    """
    radii_t = _vec3(radii, "radii", device, dtype)
    if (radii_t <= 0).any():
        raise ValueError(f"ellipsoid radii must be > 0, got {radii_t.tolist()}")
    sphere = icosphere(level, device, dtype)
    verts = sphere.verts[0] * radii_t + _vec3(center, "center", device, dtype)
    return Meshes([verts], sphere.faces)


def plane(size: Sequence[float] = (1.0, 1.0), segments: Sequence[int] = (1, 1),
          center: Sequence[float] = (0.0, 0.0, 0.0), device=None, dtype: torch.dtype = torch.float32) -> Meshes:
    """Open regular grid in the x-z plane facing +y (a floor), each grid cell split by the same diagonal.

    Args:
        size: extent (sx, sz) [scene units], > 0.
        segments: number of cells (nx, nz), >= 1; ``(nx + 1) (nz + 1)`` verts, ``2 nx nz`` faces.
        center: (3,) centre [scene units].
    """
    (sx, sz), (nx, nz) = size, segments
    if sx <= 0 or sz <= 0 or nx < 1 or nz < 1:
        raise ValueError(f"plane needs size > 0 and segments >= 1, got size={tuple(size)}, "
                         f"segments={tuple(segments)}")
    xs = torch.linspace(-sx / 2, sx / 2, nx + 1, dtype=torch.float64)
    zs = torch.linspace(-sz / 2, sz / 2, nz + 1, dtype=torch.float64)
    gx, gz = torch.meshgrid(xs, zs, indexing="ij")
    verts = torch.stack([gx, torch.zeros_like(gx), gz], -1).reshape(-1, 3).to(device=device, dtype=dtype)
    verts = verts + _vec3(center, "center", device, dtype)
    idx = torch.arange((nx + 1) * (nz + 1), device=device).reshape(nx + 1, nz + 1)
    p00, p10, p01, p11 = idx[:-1, :-1], idx[1:, :-1], idx[:-1, 1:], idx[1:, 1:]  # p10 is one step along x
    faces = torch.cat([torch.stack([p00, p01, p10], -1).reshape(-1, 3),
                       torch.stack([p10, p01, p11], -1).reshape(-1, 3)], 0)
    return Meshes([verts], [faces])


def join_meshes(parts: Sequence[Meshes | tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Concatenate parts into one mesh (no welding: parts keep their own vertices).

    Args:
        parts: :class:`Meshes` (all of their meshes are taken) or ``(verts (V, 3), faces (F, 3))`` pairs.
    Returns:
        verts (sum V, 3) in the dtype and device of the first part, and int64 faces (sum F, 3) re-indexed.
    """
    pairs: list[tuple[Tensor, Tensor]] = []
    for i, part in enumerate(parts):
        if isinstance(part, Meshes):
            pairs.extend(zip(part.verts, part.faces))
        elif isinstance(part, tuple) and len(part) == 2:
            verts, faces = part
            if verts.dim() != 2 or verts.shape[-1] != 3 or faces.dim() != 2 or faces.shape[-1] != 3:
                raise ValueError(f"part {i}: expected verts (V, 3) and faces (F, 3), got "
                                 f"{tuple(verts.shape)} and {tuple(faces.shape)}")
            pairs.append((verts, faces))
        else:
            raise ValueError(f"part {i}: expected Meshes or a (verts, faces) pair, got {type(part).__name__}")
    if not pairs:
        raise ValueError("join_meshes needs at least one part")
    ref = pairs[0][0]
    offsets = torch.tensor([0] + [v.shape[0] for v, _ in pairs[:-1]]).cumsum(0).tolist()
    verts = torch.cat([v.to(device=ref.device, dtype=ref.dtype) for v, _ in pairs], 0)
    faces = torch.cat([f.to(device=ref.device, dtype=torch.int64) + o for (_, f), o in zip(pairs, offsets)], 0)
    return verts, faces


def _orient_outward(verts: Tensor, faces: Tensor, center: Tensor) -> Tensor:
    """Flip faces whose right-hand normal points towards ``center`` (valid for convex solids only)."""
    v = verts[faces]
    normal = torch.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=-1)
    inward = (normal * (v.mean(1) - center)).sum(-1) < 0
    return torch.where(inward[:, None], faces[:, [0, 2, 1]], faces)


def _vec3(value: Sequence[float] | float, name: str, device, dtype: torch.dtype) -> Tensor:
    out = torch.as_tensor(value, device=device, dtype=dtype)
    if out.dim() == 0:
        out = out.expand(3)
    if out.shape != (3,):
        raise ValueError(f"{name} must be a number or 3 numbers, got {value!r}")
    return out
