"""Regularisers of deforming meshes: Laplacian smoothing, edge length, flatten, normal consistency.

Pure functions of a :class:`Meshes` returning a scalar (); each is the mean over the items of a mesh
(vertices, edges or pairs of adjacent faces), then the mean over the meshes of the batch, so a weight
in YAML means the same thing at every mesh resolution and batch size. (SoftRas sums its flatten and
Laplacian terms instead; multiply its weights by the number of edges or vertices to compare.)

The topology of a mesh being optimised is fixed, so the face adjacency (each manifold interior edge
with its two faces) is computed once and cached in ``meshes._cache`` under ``"mesh_priors.*"`` keys;
``Meshes.with_verts`` carries the cache over to the deformed mesh. Boundary edges (one face) and
non-manifold edges (more than two faces) take no part in the flatten and normal-consistency terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from runner.geometry.meshes import Meshes

_EPS = 1e-12
_LAPLACIAN_METHODS = ("uniform", "cotangent")


@dataclass(frozen=True)
class EdgeFaces:
    """The manifold interior edges of a packed mesh and the two faces on either side.

    Attributes:
        edge: (E, 2) int64 packed vertex ids (a, b), ordered as the edge runs in face 0 (``a -> b``).
        opposite: (E, 2) int64 packed id of the third vertex of face 0 and of face 1.
        faces: (E, 2) int64 packed ids of face 0 and face 1.
        edge_to_mesh: (E,) int64 index of the mesh each edge belongs to.
    """

    edge: Tensor
    opposite: Tensor
    faces: Tensor
    edge_to_mesh: Tensor


def edge_faces(meshes: Meshes) -> EdgeFaces:
    """The face adjacency of ``meshes``, computed once and cached in ``meshes._cache``."""
    key = "mesh_priors.edge_faces"
    if key not in meshes._cache:
        meshes._cache[key] = _build_edge_faces(meshes.faces_packed, meshes.face_to_mesh)
    return meshes._cache[key]


def laplacian(meshes: Meshes, method: str = "uniform") -> Tensor:
    """Normalised Laplacian coordinates ``delta_i = sum_j w_ij (x_j - x_i) / sum_j w_ij`` of every vertex.

    ``uniform`` uses ``w_ij = 1`` on mesh edges (the umbrella operator: Taubin, "A signal processing
    approach to fair surface design", SIGGRAPH 1995); its delta is zero at a vertex that is the
    centroid of its neighbours. ``cotangent`` uses ``w_ij = (cot alpha_ij + cot beta_ij) / 2`` from the
    angles opposite edge ij (Desbrun et al., "Implicit fairing of irregular meshes", SIGGRAPH 1999;
    Meyer et al. 2003); its delta is zero wherever the surface is locally flat, whatever the sampling,
    and approximates the mean-curvature normal. The weights are differentiated through as well.
    A vertex whose weights sum to <= 0 (isolated, or surrounded by very obtuse angles) gets delta 0.

    Args:
        meshes: B meshes.
        method: "uniform" or "cotangent".
    Returns:
        (sum V_b, 3) packed Laplacian vectors [scene units].
    """
    if method not in _LAPLACIAN_METHODS:
        raise ValueError(f"laplacian method must be one of {_LAPLACIAN_METHODS}, got {method!r}")
    x = meshes.verts_packed
    if method == "uniform":
        i, j = meshes.edges_packed.unbind(1)
        w = x.new_ones(i.shape[0])
    else:
        f = meshes.faces_packed
        corner, i, j = f.reshape(-1), f[:, [1, 2, 0]].reshape(-1), f[:, [2, 0, 1]].reshape(-1)  # edge opposite corner
        u, v = x[i] - x[corner], x[j] - x[corner]
        w = 0.5 * (u * v).sum(-1) / torch.cross(u, v, dim=-1).norm(dim=-1).clamp(min=_EPS)
    diff = w[:, None] * (x[j] - x[i])
    delta = torch.zeros_like(x).index_add(0, i, diff).index_add(0, j, -diff)
    total = torch.zeros_like(x[:, 0]).index_add(0, i, w).index_add(0, j, w)
    valid = total > _EPS
    return torch.where(valid[:, None], delta / torch.where(valid, total, 1.0)[:, None], torch.zeros_like(delta))


def laplacian_smoothing(meshes: Meshes, method: str = "uniform") -> Tensor:
    """Mean norm of the Laplacian coordinates, ``mean_i |delta_i|`` (PyTorch3D's ``mesh_laplacian_smoothing``).

    Pulls each vertex towards the (weighted) centroid of its neighbours (Nealen et al., "Laplacian mesh
    optimization", GRAPHITE 2006); see :func:`laplacian` for the two weightings. Returns a scalar ().
    """
    norm = laplacian(meshes, method).norm(dim=-1)
    return _mean_per_mesh(norm, meshes.vert_to_mesh, len(meshes))


def edge_length(meshes: Meshes, target: float = 0.0) -> Tensor:
    """Mean squared deviation of the edge lengths from ``target`` [scene units], ``mean_e (|e| - target)^2``.

    With ``target = 0`` this is the edge regulariser of Pixel2Mesh (Wang et al., ECCV 2018) that keeps
    vertices from flying apart. Returns a scalar () [scene units^2].
    """
    if target < 0:
        raise ValueError(f"edge_length target must be >= 0, got {target}")
    edges = meshes.edges_packed
    x = meshes.verts_packed
    length = (x[edges[:, 0]] - x[edges[:, 1]]).norm(dim=-1)
    return _mean_per_mesh((length - target) ** 2, meshes.vert_to_mesh[edges[:, 0]], len(meshes))


def flatten(meshes: Meshes) -> Tensor:
    """Flatten loss of Soft Rasterizer (Liu et al., ICCV 2019): ``mean_e (cos theta_e + 1)^2``.

    ``theta_e`` is the dihedral angle at an interior edge between the two half-planes that contain its
    adjacent faces (pi on a flat surface, where the loss is 0; 0 for a face folded back onto its
    neighbour, where it is 4). Returns a scalar ().
    """
    adj = edge_faces(meshes)
    x = meshes.verts_packed
    a, b = x[adj.edge[:, 0]], x[adj.edge[:, 1]]
    axis = torch.nn.functional.normalize(b - a, dim=-1, eps=_EPS)

    def perpendicular(p: Tensor) -> Tensor:  # component of (p - a) orthogonal to the edge, normalised
        d = p - a
        return torch.nn.functional.normalize(d - (d * axis).sum(-1, keepdim=True) * axis, dim=-1, eps=_EPS)

    cos = (perpendicular(x[adj.opposite[:, 0]]) * perpendicular(x[adj.opposite[:, 1]])).sum(-1)
    return _mean_per_mesh((cos + 1) ** 2, adj.edge_to_mesh, len(meshes))


def normal_consistency(meshes: Meshes) -> Tensor:
    """Mean ``1 - cos`` of the angle between the normals of adjacent faces, as PyTorch3D's
    ``mesh_normal_consistency`` (0 on a flat, consistently oriented surface). Returns a scalar ().
    """
    adj = edge_faces(meshes)
    normals = meshes.face_normals_packed()
    cos = (normals[adj.faces[:, 0]] * normals[adj.faces[:, 1]]).sum(-1)
    return _mean_per_mesh(1 - cos, adj.edge_to_mesh, len(meshes))


def _build_edge_faces(faces: Tensor, face_to_mesh: Tensor) -> EdgeFaces:
    """Match the corners of all faces by their opposite undirected edge; keep edges seen exactly twice."""
    F = faces.shape[0]
    directed = torch.stack([faces[:, [1, 2, 0]], faces[:, [2, 0, 1]]], -1).reshape(-1, 2)  # edge opposite corner
    opposite = faces.reshape(-1)
    face = torch.arange(F, device=faces.device).repeat_interleave(3)
    _, inverse, counts = torch.unique(directed.sort(1).values, dim=0, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    pair = (counts == 2).nonzero().squeeze(1)
    first, second = order[starts[pair]], order[starts[pair] + 1]
    return EdgeFaces(
        edge=directed[first],
        opposite=torch.stack([opposite[first], opposite[second]], 1),
        faces=torch.stack([face[first], face[second]], 1),
        edge_to_mesh=face_to_mesh[face[first]],
    )


def _mean_per_mesh(values: Tensor, owner: Tensor, B: int) -> Tensor:
    """Mean of ``values`` (N,) within each of the B meshes given by ``owner`` (N,), then over meshes; ()."""
    sums = values.new_zeros(B).index_add(0, owner, values)
    counts = torch.bincount(owner, minlength=B).clamp(min=1).to(values.dtype)
    return (sums / counts).mean()
