"""Solid voxelisation (parity and enclosed shell) against analytic occupancy of boxes and spheres; voxel IoU."""

import math

import pytest
import torch

from runner.geometry.mesh_io import load_mesh, normalize_to_unit_cube
from runner.geometry.meshes import Meshes
from runner.geometry.primitives import box, ellipsoid, icosphere
from runner.geometry.voxelize import voxel_iou, voxelize
from tests.conftest import shared_data


def centres(R, lo=-0.5, hi=0.5):
    """(R, R, R, 3) voxel centres indexed [x, y, z]."""
    c = lo + (torch.arange(R, dtype=torch.float64) + 0.5) * (hi - lo) / R
    return torch.stack(torch.meshgrid(c, c, c, indexing="ij"), -1)


def test_cube_fills_exactly_its_voxels():
    occ = voxelize(box(0.5), 32)
    assert occ.shape == (1, 32, 32, 32) and occ.dtype == torch.bool
    assert occ.sum().item() == 16 ** 3


def test_off_centre_box_matches_the_analytic_mask():
    center, size = torch.tensor([0.1, -0.07, 0.2]), torch.tensor([0.5, 0.25, 0.33])
    occ = voxelize(box(size.tolist(), center.tolist()), 24)[0]
    inside = ((centres(24) - center.double()).abs() < size.double() / 2).all(-1)
    assert torch.equal(occ, inside)


def test_sphere_volume_and_shape():
    r = 0.4
    occ = voxelize(ellipsoid(r, level=4), 32)[0]
    assert occ.float().mean().item() == pytest.approx(4 / 3 * math.pi * r ** 3, rel=0.02)
    dist = centres(32).norm(dim=-1)
    h = 1 / 32
    assert occ[dist < r - h].all() and not occ[dist > r + h].any()  # errors only within a voxel of the surface


def winding_number(verts, faces, points):
    """Reference: generalised winding number (Jacobson et al., SIGGRAPH 2013) from triangle solid angles
    (Van Oosterom & Strackee 1983); ~1 inside a closed outward mesh, ~0 outside."""
    t = verts.double()[faces][None] - points.double()[:, None, None]  # (P, F, 3, 3)
    a, b, c = t.unbind(2)
    la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
    num = (a * torch.cross(b, c, dim=-1)).sum(-1)
    den = la * lb * lc + (a * b).sum(-1) * lc + (a * c).sum(-1) * lb + (b * c).sum(-1) * la
    return (2 * torch.atan2(num, den)).sum(-1) / (4 * math.pi)


@pytest.mark.slow
def test_real_bunny_matches_the_winding_number_reference():
    bunny = load_mesh(shared_data("meshes", "bunny_lowres.obj"), dtype=torch.float64)
    verts = 0.9 * normalize_to_unit_cube(bunny.verts[0])
    occ = voxelize(bunny.with_verts([verts]), 16)[0]
    points = centres(16).reshape(-1, 3)
    inside = torch.cat([winding_number(verts, bunny.faces[0], p) > 0.5 for p in points.split(512)])
    assert torch.equal(occ.flatten(), inside)
    assert 300 < occ.sum().item() < 16 ** 3 / 2


def test_batch_and_bounds():
    sphere, cube = icosphere(3), box(1.0, center=(1.0, 1.0, 1.0))
    batch = Meshes([sphere.verts[0], cube.verts[0]], [sphere.faces[0], cube.faces[0]])
    occ = voxelize(batch, 16, bounds=(0.0, 2.0))
    assert occ.shape == (2, 16, 16, 16)
    assert torch.equal(occ[0], voxelize(Meshes(sphere.verts, sphere.faces), 16, (0.0, 2.0))[0])
    assert occ[1].sum().item() == 8 ** 3 and occ[1, 4:12, 4:12, 4:12].all()
    assert occ[0, :8, :8, :8].any() and not occ[0, 8:].any()  # only the sphere's +x+y+z octant is in bounds


def test_a_small_hole_is_repaired_by_the_majority_vote():
    sphere = icosphere(3)
    closed = voxelize(sphere, 32)
    holed = Meshes(sphere.verts, [sphere.faces[0][1:]])  # one of 1280 faces removed
    assert voxel_iou(voxelize(holed, 32), closed).item() > 0.995


def test_voxel_iou_analytic():
    a = torch.zeros(2, 4, 4, 4, dtype=torch.bool)
    b = torch.zeros_like(a)
    a[0, :2], b[0, 1:3] = True, True  # 32 and 32 voxels sharing 16
    iou = voxel_iou(a, b)
    assert iou.tolist() == [pytest.approx(16 / 48), 1.0]  # two empty grids are identical
    with pytest.raises(ValueError, match=r"\(B, R, R, R\)"):
        voxel_iou(a, b[:, :2])


def test_bad_inputs():
    with pytest.raises(ValueError, match="resolution"):
        voxelize(box(), 0)
    with pytest.raises(ValueError, match="hi > lo"):
        voxelize(box(), 8, bounds=(0.5, -0.5))


def touched(lo_corner, hi_corner, R, lo=-0.5, hi=0.5):
    """(R, R, R) bool: the voxels whose cells meet the axis-aligned box [lo_corner, hi_corner]."""
    edges = lo + torch.arange(R + 1, dtype=torch.float64) * (hi - lo) / R
    axes = [(edges[1:] > a) & (edges[:-1] < b) for a, b in zip(lo_corner, hi_corner)]
    return axes[0][:, None, None] & axes[1][None, :, None] & axes[2][None, None, :]


def test_enclosed_box_is_every_voxel_it_touches():
    center, size = torch.tensor([0.1, -0.07, 0.2]), torch.tensor([0.5, 0.25, 0.33])
    occ = voxelize(box(size.tolist(), center.tolist()), 24, method="enclosed")[0]
    assert torch.equal(occ, touched((center - size / 2).tolist(), (center + size / 2).tolist(), 24))


def test_enclosed_sphere_adds_at_most_a_shell_of_one_voxel():
    r, R = 0.4, 32
    solid = voxelize(ellipsoid(r, level=4), R)[0]
    occ = voxelize(ellipsoid(r, level=4), R, method="enclosed")[0]
    dist = centres(R).norm(dim=-1)
    assert (occ | solid).equal(occ)  # the parity solid lies inside
    assert not occ[dist > r + math.sqrt(3) / R].any()  # extra voxels only where the surface passes through


def test_enclosed_is_unharmed_by_overlapping_parts():
    """Two overlapping cubes in one mesh: parity loses the overlap (crossed twice), enclosed keeps it."""
    a, b = box(0.4, center=(-0.1, 0.01, 0.02)), box(0.4, center=(0.1, 0.01, 0.02))
    both = Meshes([torch.cat([a.verts[0], b.verts[0]])], [torch.cat([a.faces[0], b.faces[0] + len(a.verts[0])])])
    union = voxelize(a, 32, method="enclosed") | voxelize(b, 32, method="enclosed")
    assert torch.equal(voxelize(both, 32, method="enclosed"), union)
    parity_union = voxelize(a, 32) | voxelize(b, 32)
    assert voxelize(both, 32).sum() < parity_union.sum() - 1000  # the hole where they overlap


def test_enclosed_closes_a_solid_cut_by_the_bounds():
    """A shape flush with or beyond the unit cube is still filled: the bounds close its shell."""
    flush = voxelize(box([1.0, 0.5, 0.5]), 16, method="enclosed")[0]  # touches x = -0.5 and x = 0.5
    assert flush[:, 4:12, 4:12].all()
    beyond = voxelize(box(1.6, center=(0.3, 0.0, 0.0)), 16, method="enclosed")[0]
    assert beyond.all()


def test_unknown_method():
    with pytest.raises(ValueError, match="method must be 'parity' or 'enclosed'"):
        voxelize(box(0.5), 8, method="winding")
