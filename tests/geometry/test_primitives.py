"""Primitives: counts, closedness, outward orientation and analytic volumes."""

import math

import pytest
import torch

from runner.geometry.meshes import Meshes
from runner.geometry.primitives import box, cylinder, ellipsoid, icosphere, join_meshes, plane


def signed_volume(verts, faces):
    """Divergence theorem: positive for a closed mesh with outward CCW faces."""
    t = verts.double()[faces]
    return (t[:, 0] * torch.cross(t[:, 1], t[:, 2], dim=-1)).sum().item() / 6


def assert_closed_and_consistent(faces):
    """Every directed edge occurs once and its reverse once: closed, manifold, consistently oriented."""
    directed = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0)
    uniq, counts = torch.unique(directed, dim=0, return_counts=True)
    assert (counts == 1).all(), "a directed edge is used twice: inconsistent orientation or non-manifold"
    reverse = set(map(tuple, directed.flip(1).tolist()))
    assert set(map(tuple, uniq.tolist())) == reverse, "an edge has no opposite half-edge: the mesh is open"


@pytest.mark.parametrize("level,V,F", [(0, 12, 20), (1, 42, 80), (3, 642, 1280), (4, 2562, 5120), (5, 10242, 20480)])
def test_icosphere_counts_radius_euler(level, V, F):
    m = icosphere(level)
    verts, faces = m.verts[0], m.faces[0]
    assert verts.shape == (V, 3) and faces.shape == (F, 3)
    assert torch.allclose(verts.norm(dim=-1), torch.ones(V), atol=1e-6)
    E = m.edges_packed.shape[0]
    assert V - E + F == 2
    if level <= 3:  # shared vertices, no duplicates (torch.unique over rows is slow at level 5)
        assert len(torch.unique(verts, dim=0)) == V


@pytest.mark.parametrize("level", [0, 2])
def test_icosphere_is_closed_and_outward(level):
    m = icosphere(level, dtype=torch.float64)
    assert_closed_and_consistent(m.faces[0])
    tri = m.verts[0][m.faces[0]]
    normals = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    assert ((normals * tri.mean(1)).sum(-1) > 0).all()


def test_icosphere_volume_converges_to_the_ball_and_dtype_is_kept():
    m = icosphere(4, dtype=torch.float64)
    assert m.verts[0].dtype == torch.float64 and m.faces[0].dtype == torch.int64
    assert signed_volume(m.verts[0], m.faces[0]) == pytest.approx(4 / 3 * math.pi, rel=5e-3)


def test_icosphere_rejects_bad_level():
    with pytest.raises(ValueError, match="level"):
        icosphere(-1)
    with pytest.raises(ValueError, match="level"):
        icosphere(1.5)


def test_box_volume_bounds_and_orientation():
    m = box((1.0, 2.0, 3.0), center=(0.5, -1.0, 2.0))
    verts, faces = m.verts[0], m.faces[0]
    assert verts.shape == (8, 3) and faces.shape == (12, 3)
    assert_closed_and_consistent(faces)
    assert signed_volume(verts, faces) == pytest.approx(6.0, rel=1e-6)
    assert verts.min(0).values.tolist() == [0.0, -2.0, 0.5]
    assert verts.max(0).values.tolist() == [1.0, 0.0, 3.5]
    normals = m.face_normals_packed()
    axis_aligned = normals.abs().max(-1).values
    assert torch.allclose(axis_aligned, torch.ones(12))


@pytest.mark.parametrize("axis,dim", [("x", 0), ("y", 1), ("z", 2)])
def test_cylinder_volume_and_axis(axis, dim):
    s, r, h = 24, 0.3, 1.2
    m = cylinder(r, h, s, center=(1.0, 2.0, 3.0), axis=axis)
    verts, faces = m.verts[0], m.faces[0]
    assert verts.shape == (2 * s + 2, 3) and faces.shape == (4 * s, 3)
    assert_closed_and_consistent(faces)
    polygon_area = 0.5 * s * r * r * math.sin(2 * math.pi / s)
    assert signed_volume(verts, faces) == pytest.approx(polygon_area * h, rel=1e-5)
    extent = verts.max(0).values - verts.min(0).values
    assert extent[dim].item() == pytest.approx(h, rel=1e-6)
    bottom = verts[:s, dim]  # the bottom ring lies at the -axis end
    assert torch.allclose(bottom, torch.full_like(bottom, [1.0, 2.0, 3.0][dim] - h / 2))


def test_frustum_volume():
    s, r0, r1, h = 32, 0.5, 0.2, 1.0
    m = cylinder(r0, h, s, radius_top=r1)
    area = 0.5 * s * math.sin(2 * math.pi / s)  # polygon area per unit radius squared
    a0, a1 = area * r0 ** 2, area * r1 ** 2
    assert signed_volume(m.verts[0], m.faces[0]) == pytest.approx(h / 3 * (a0 + a1 + math.sqrt(a0 * a1)), rel=1e-5)
    assert_closed_and_consistent(m.faces[0])


def test_ellipsoid_volume_and_extent():
    m = ellipsoid((0.5, 0.2, 0.3), center=(0.0, 1.0, 0.0), level=4, dtype=torch.float64)
    assert signed_volume(m.verts[0], m.faces[0]) == pytest.approx(4 / 3 * math.pi * 0.5 * 0.2 * 0.3, rel=5e-3)
    assert m.verts[0][:, 1].max().item() == pytest.approx(1.2, abs=1e-9)


def test_plane_faces_up_and_counts():
    m = plane((2.0, 1.0), (4, 3), center=(0.0, 0.5, 0.0))
    assert m.verts[0].shape == (20, 3) and m.faces[0].shape == (24, 3)
    assert torch.allclose(m.face_normals_packed(), torch.tensor([0.0, 1.0, 0.0]).expand(24, 3))
    assert torch.allclose(m.verts[0][:, 1], torch.full((20,), 0.5))
    tri = m.verts[0][m.faces[0]]
    area = 0.5 * torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1).norm(dim=-1).sum()
    assert area.item() == pytest.approx(2.0)


def test_join_meshes_concatenates_and_reindexes():
    a, b = box(1.0), box(0.5, center=(3.0, 0.0, 0.0))
    extra = (torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]), torch.tensor([[0, 1, 2]]))
    verts, faces = join_meshes([a, b, extra])
    assert verts.shape == (19, 3) and faces.shape == (25, 3) and faces.dtype == torch.int64
    assert faces[12:24].min().item() == 8 and faces[24].tolist() == [16, 17, 18]
    assert signed_volume(verts[:16], faces[:24]) == pytest.approx(1.0 + 0.125)
    batch = Meshes([a.verts[0], b.verts[0]], [a.faces[0], b.faces[0]])
    v2, f2 = join_meshes([batch])
    assert torch.equal(v2, verts[:16]) and torch.equal(f2, faces[:24])


def test_bad_primitive_inputs_raise():
    with pytest.raises(ValueError, match="size must be > 0"):
        box((1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="3 numbers"):
        box((1.0, 1.0))
    with pytest.raises(ValueError, match="segments"):
        cylinder(segments=2)
    with pytest.raises(ValueError, match="axis"):
        cylinder(axis="w")
    with pytest.raises(ValueError, match="radius"):
        cylinder(radius_top=0.0)
    with pytest.raises(ValueError, match="radii"):
        ellipsoid((1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="segments >= 1"):
        plane(segments=(0, 1))
    with pytest.raises(ValueError, match="at least one part"):
        join_meshes([])
    with pytest.raises(ValueError, match="part 0"):
        join_meshes([torch.zeros(3, 3)])
