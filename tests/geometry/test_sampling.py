"""Surface sampling: points on the surface, area-uniform, differentiable, reproducible."""

import pytest
import torch

from runner.geometry.meshes import Meshes
from runner.geometry.primitives import box, icosphere
from runner.geometry.sampling import sample_points


def side_of_box(points, half):
    """(B, n) index 0..5 of the box side (-x, +x, -y, +y, -z, +z) each point lies on."""
    axis = (points.abs() / half).argmax(-1)
    positive = torch.gather(points, -1, axis[..., None]).squeeze(-1) > 0
    return 2 * axis + positive.long()


def test_points_lie_on_the_unit_cube_and_cover_faces_by_area():
    g = torch.Generator().manual_seed(0)
    sizes = torch.tensor([1.0, 2.0, 3.0])
    points, normals = sample_points(box(sizes.tolist()), 30000, g, return_normals=True)
    assert points.shape == (1, 30000, 3) and normals.shape == (1, 30000, 3)
    half = sizes / 2
    assert torch.allclose((points.abs() / half).max(-1).values, torch.ones(1, 30000), atol=1e-6)
    side = side_of_box(points, half)
    fraction = torch.bincount(side.flatten(), minlength=6).float() / 30000
    area = torch.tensor([6.0, 6.0, 3.0, 3.0, 2.0, 2.0]) / 22  # (y z, y z, x z, x z, x y, x y) / total
    assert torch.allclose(fraction, area, atol=0.012)  # ~4 binomial standard deviations
    expected_normals = torch.eye(3).repeat_interleave(2, 0) * torch.tensor([-1.0, 1.0]).repeat(3)[:, None]
    assert torch.allclose(normals[0], expected_normals[side[0]], atol=1e-6)


def test_points_are_uniform_within_a_face():
    g = torch.Generator().manual_seed(1)
    points = sample_points(box(1.0), 60000, g)[0]
    top = points[points[:, 1] > 0.5 - 1e-6]  # the +y side: two triangles split by a diagonal
    cells = ((top[:, [0, 2]] + 0.5) * 4).long().clamp(0, 3)
    hist = torch.bincount(cells[:, 0] * 4 + cells[:, 1], minlength=16).float() / len(top)
    assert torch.allclose(hist, torch.full((16,), 1 / 16), atol=0.012)
    assert torch.allclose(top[:, [0, 2]].var(0), torch.full((2,), 1 / 12), atol=4e-3)  # uniform on [-0.5, 0.5]


def test_batch_of_different_meshes_and_reproducibility():
    sphere, cube = icosphere(2), box(0.5)
    batch = Meshes([sphere.verts[0], cube.verts[0]], [sphere.faces[0], cube.faces[0]])
    a = sample_points(batch, 500, torch.Generator().manual_seed(3))
    b = sample_points(batch, 500, torch.Generator().manual_seed(3))
    assert a.shape == (2, 500, 3) and torch.equal(a, b)
    r = a[0].norm(dim=-1)
    assert r.max() <= 1 + 1e-6 and r.min() > 0.93  # on the inscribed polyhedron of the unit sphere
    assert torch.allclose(a[1].abs().max(-1).values, torch.full((500,), 0.25), atol=1e-6)


def test_points_are_differentiable_wrt_verts():
    m = icosphere(1, dtype=torch.float64)
    verts = m.verts[0].clone().requires_grad_()
    points = sample_points(m.with_verts([verts]), 200, torch.Generator().manual_seed(0))
    points.sum().backward()
    # Barycentric weights sum to one: translating every vertex by t translates every point by t.
    assert torch.allclose(verts.grad.sum(0), torch.full((3,), 200.0, dtype=torch.float64))
    assert (verts.grad.abs().sum(-1) > 0).sum() > 30


def test_bad_inputs():
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        sample_points(box(), 0)
    flat = Meshes([torch.zeros(3, 3)], [torch.tensor([[0, 1, 2]])])
    with pytest.raises(ValueError, match="non-zero surface area"):
        sample_points(flat, 10)
    empty = Meshes([torch.zeros(3, 3), torch.eye(3)], [torch.zeros(0, 3, dtype=torch.int64), torch.tensor([[0, 1, 2]])])
    with pytest.raises(ValueError, match="mesh 0 has no faces"):
        sample_points(empty, 10)
