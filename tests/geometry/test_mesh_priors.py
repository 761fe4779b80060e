"""Mesh priors (runner.losses.mesh_priors): analytic values, zero cases, gradcheck, adjacency cache."""

import math

import pytest
import torch

from runner.geometry.meshes import Meshes
from runner.geometry.primitives import icosphere, plane
from runner.losses.mesh_priors import (
    edge_faces,
    edge_length,
    flatten,
    laplacian,
    laplacian_smoothing,
    normal_consistency,
)

PRIORS = {
    "laplacian_uniform": lambda m: laplacian_smoothing(m, "uniform"),
    "laplacian_cotangent": lambda m: laplacian_smoothing(m, "cotangent"),
    "edge_length": lambda m: edge_length(m, target=0.5),
    "flatten": flatten,
    "normal_consistency": normal_consistency,
}


def grid(n=6, jitter=0.0, dtype=torch.float64):
    """A flat n x n grid in the x-z plane; interior vertices optionally jittered within the plane."""
    m = plane((1.0, 1.0), (n, n), dtype=dtype)
    idx = torch.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    interior = idx[1:-1, 1:-1].flatten()
    verts = m.verts[0].clone()
    g = torch.Generator().manual_seed(0)
    verts[interior, 0] += jitter * (torch.rand(len(interior), generator=g, dtype=dtype) - 0.5) / n
    verts[interior, 2] += jitter * (torch.rand(len(interior), generator=g, dtype=dtype) - 0.5) / n
    return m.with_verts([verts]), interior


def two_triangles(d):
    """Faces (a, b, c) and (b, a, d) sharing the edge a-b; c lies in the x-y plane above the edge."""
    verts = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, 1.0, 0.0], d], dtype=torch.float64)
    return Meshes([verts], [torch.tensor([[0, 1, 2], [1, 0, 3]])])


def test_flat_plane_has_zero_flatten_and_normal_consistency():
    m, _ = grid(jitter=0.5)
    assert flatten(m).item() < 1e-20
    assert normal_consistency(m).item() < 1e-12


def test_uniform_laplacian_vanishes_inside_a_regular_grid():
    m, interior = grid()
    delta = laplacian(m, "uniform")
    assert delta[interior].abs().max().item() < 1e-12
    assert delta.abs().max().item() > 0.01  # but not on the boundary


def test_cotangent_laplacian_vanishes_on_any_flat_triangulation():
    m, interior = grid(jitter=0.8)
    assert laplacian(m, "cotangent")[interior].abs().max().item() < 1e-12
    assert laplacian(m, "uniform")[interior].abs().max().item() > 1e-3  # the umbrella operator does not


def test_icosahedron_analytic_values():
    m = icosphere(0, dtype=torch.float64)
    cos_dihedral = -math.sqrt(5) / 3  # the icosahedron's dihedral angle is arccos(-sqrt(5)/3)
    assert flatten(m).item() == pytest.approx((cos_dihedral + 1) ** 2)
    # Adjacent face normals make the supplementary angle.
    assert normal_consistency(m).item() == pytest.approx(1 + cos_dihedral)
    edge = 4 / math.sqrt(10 + 2 * math.sqrt(5))  # edge of the icosahedron inscribed in the unit sphere
    assert edge_length(m).item() == pytest.approx(edge ** 2)
    assert edge_length(m, target=edge).item() == pytest.approx(0.0, abs=1e-20)
    # Equilateral faces: both Laplacians point to the neighbours' centroid, straight towards the centre.
    uniform, cot = laplacian(m, "uniform"), laplacian(m, "cotangent")
    assert torch.allclose(uniform, cot, atol=1e-12)
    cos_to_centre = (torch.nn.functional.normalize(uniform, dim=-1) * m.verts[0]).sum(-1)
    assert torch.allclose(cos_to_centre, -torch.ones(12, dtype=torch.float64))


def test_folds_between_two_triangles():
    folded = two_triangles([0.3, 1.0, 0.0])  # d on the same side as c: folded back, dihedral angle 0
    assert flatten(folded).item() == pytest.approx(4.0)
    assert normal_consistency(folded).item() == pytest.approx(2.0)
    square = two_triangles([0.5, 0.0, 1.0])  # right angle
    assert flatten(square).item() == pytest.approx(1.0)
    assert normal_consistency(square).item() == pytest.approx(1.0)


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_gradcheck_float64(name):
    m = icosphere(0, dtype=torch.float64)
    g = torch.Generator().manual_seed(4)
    verts = (m.verts[0] + 0.1 * torch.randn(12, 3, generator=g, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: PRIORS[name](m.with_verts([v])), (verts,))


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_batch_is_the_mean_of_the_meshes(name):
    a, b = icosphere(1, dtype=torch.float64), grid(n=3, jitter=0.5)[0]
    b = b.with_verts([b.verts[0] + torch.tensor([0.0, 0.0, 0.1], dtype=torch.float64) * b.verts[0][:, :1] ** 2])
    batch = Meshes([a.verts[0], b.verts[0]], [a.faces[0], b.faces[0]])
    prior = PRIORS[name]
    assert prior(batch).item() == pytest.approx(0.5 * (prior(a).item() + prior(b).item()), rel=1e-10)
    assert prior(batch).shape == ()


def test_adjacency_is_cached_and_survives_with_verts():
    m, _ = grid(n=6)
    adj = edge_faces(m)
    assert adj.edge.shape == (96, 2)  # 6x6 grid: 120 edges, 24 on the boundary
    assert "mesh_priors.edge_faces" in m._cache
    moved = m.with_verts([m.verts[0] * 2])
    assert edge_faces(moved) is adj
    f = m.faces[0]
    for k in range(0, 96, 17):  # each edge lies in both faces, the opposite vertices do not
        e = set(adj.edge[k].tolist())
        for side in range(2):
            face = set(f[adj.faces[k, side]].tolist())
            assert e < face and face - e == {adj.opposite[k, side].item()}


def test_bad_inputs():
    m = icosphere(0)
    with pytest.raises(ValueError, match="method must be one of"):
        laplacian_smoothing(m, "cot")
    with pytest.raises(ValueError, match="target must be >= 0"):
        edge_length(m, target=-1.0)
