"""Chamfer, F-score, normal consistency and volumetric IoU on analytic cases."""

import pytest
import torch

from runner.geometry.mesh_metrics import chamfer_distance, fscore, iou_3d, nearest_neighbors, normal_consistency
from runner.geometry.meshes import Meshes
from runner.geometry.primitives import box
from runner.geometry.sampling import sample_points


def grid_cloud(n=5, spacing=0.1, dtype=torch.float32):
    """(1, n^3, 3) points on a regular grid."""
    c = torch.arange(n, dtype=dtype) * spacing
    return torch.stack(torch.meshgrid(c, c, c, indexing="ij"), -1).reshape(1, -1, 3)


def test_chamfer_of_a_shifted_copy_is_twice_the_squared_shift():
    a = grid_cloud()
    shift = torch.tensor([0.03, -0.01, 0.02])  # shorter than half the spacing: each point's match is its copy
    cd = chamfer_distance(a, a + shift)
    assert cd.shape == (1,)
    assert cd.item() == pytest.approx(2 * (shift ** 2).sum().item(), rel=1e-4)


def test_chamfer_is_asymmetric_per_direction_and_squared():
    a = torch.tensor([[[0.0, 0.0, 0.0]]])
    b = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]])
    assert chamfer_distance(a, b).item() == pytest.approx(0.0 + (0.0 + 4.0) / 2)


def test_chamfer_of_a_sampled_cube_with_itself_is_zero_and_batched():
    g = torch.Generator().manual_seed(0)
    p = sample_points(box(1.0), 2000, g)
    q = sample_points(box(1.0), 2000, g)
    batch_a, batch_b = torch.cat([p, p]), torch.cat([p, q])
    cd = chamfer_distance(batch_a, batch_b)
    assert cd[0].item() < 1e-10
    # Two samplings of one surface: for a Poisson process of density rho on a plane, E[d^2] to the
    # nearest point is 1 / (pi rho); both directions give 2 area / (pi n).
    assert cd[1].item() == pytest.approx(2 * 6.0 / (torch.pi * 2000), rel=0.15)


def test_chunked_nearest_neighbours_match_brute_force():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 300, 3, generator=g), torch.rand(2, 200, 3, generator=g)
    brute = ((a[:, :, None] - b[:, None]) ** 2).sum(-1).argmin(-1)
    assert torch.equal(nearest_neighbors(a, b, chunk_elements=1000), brute)
    assert torch.equal(nearest_neighbors(a, b), brute)


def test_chamfer_gradcheck_float64():
    g = torch.Generator().manual_seed(2)
    a = torch.rand(2, 6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.rand(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(chamfer_distance, (a, b))


@pytest.mark.slow
def test_chamfer_on_ten_thousand_points_each():
    g = torch.Generator().manual_seed(3)
    p = torch.rand(1, 10000, 3, generator=g)
    assert chamfer_distance(p, p + torch.tensor([1e-3, 0, 0])).item() == pytest.approx(2e-6, rel=1e-2)


def test_fscore_analytic():
    a = grid_cloud()
    assert fscore(a, a, 0.01).item() == 1.0
    assert fscore(a, a + torch.tensor([0.02, 0, 0]), 0.01).item() == 0.0
    far = a + 10.0
    pred = torch.cat([a, far], 1)  # precision 1/2, recall 1
    assert fscore(pred, a, 0.01).item() == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert fscore(a, pred, 0.01).item() == pytest.approx(2 / 3)  # recall 1/2, precision 1


def test_normal_consistency_metric():
    a = grid_cloud()
    up = torch.tensor([0.0, 0.0, 1.0]).expand_as(a)
    side = torch.tensor([1.0, 0.0, 0.0]).expand_as(a)
    tilted = torch.tensor([0.0, 1.0, 1.0]).expand_as(a)  # unnormalised, 45 degrees from up
    assert normal_consistency(a, up, a, up).item() == pytest.approx(1.0)
    assert normal_consistency(a, up, a, -up).item() == pytest.approx(1.0)  # orientation-blind
    assert normal_consistency(a, up, a, side).item() == pytest.approx(0.0, abs=1e-7)
    assert normal_consistency(a, up, a, 2 * tilted).item() == pytest.approx(2 ** -0.5)


def test_iou_3d_of_shifted_cubes():
    a = box(0.5)
    b = box(0.5, center=(0.125, 0.0, 0.0))  # 4 voxels at 32^3
    batch_a = Meshes(a.verts * 2, a.faces * 2)
    batch_b = Meshes([a.verts[0], b.verts[0]], [a.faces[0], b.faces[0]])
    iou = iou_3d(batch_a, batch_b, resolution=32)
    overlap = 0.375 / 0.5
    assert iou[0].item() == 1.0
    assert iou[1].item() == pytest.approx(overlap / (2 - overlap), abs=1 / 16)
    assert iou[1].item() == pytest.approx(0.6)  # exact here: the faces lie between voxel centres


def test_bad_inputs():
    a = grid_cloud()
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        chamfer_distance(a[0], a[0])
    with pytest.raises(ValueError, match="batch sizes differ"):
        chamfer_distance(a, torch.cat([a, a]))
    with pytest.raises(ValueError, match="must not be empty"):
        chamfer_distance(a, a[:, :0])
    with pytest.raises(ValueError, match="threshold must be > 0"):
        fscore(a, a, 0.0)
    with pytest.raises(ValueError, match="normals must match"):
        normal_consistency(a, a[:, :3], a, a)
    with pytest.raises(ValueError, match="batch sizes differ"):
        iou_3d(box(), Meshes(box().verts * 2, box().faces * 2))
