"""Reconstruction metrics on analytic cases: a cube against itself and against a shifted cube."""

from __future__ import annotations

import pytest
import torch

from runner.geometry.primitives import box
from tasks.single_view_recon import metrics


def test_cube_against_itself_is_perfect():
    cube = box(0.5)
    assert metrics.iou_3d(cube, metrics.voxels(cube)) == {"iou_3d": 1.0, "iou_3d_parity": 1.0}
    s = metrics.surface_metrics(cube, cube, num_points=4000, seed=0)
    assert s["chamfer"] == 0.0 and s["fscore"] == 1.0


def test_cube_against_a_shifted_cube():
    # Side 0.5 off the voxel grid, shifted by 0.125 (4 voxels of 1/32) along x. Parity: 16 voxel centres
    # per axis inside each cube, 12 shared in x: 12 / 20 = 0.6. Enclosed: the 17 voxels per axis the cube
    # touches (x from -0.24 to 0.26 spans voxels 8..24), 13 shared: 13 / 21.
    c = (0.01, 0.013, 0.017)
    cube, shifted = box(0.5, center=c), box(0.5, center=(c[0] + 0.125, c[1], c[2]))
    iou = metrics.iou_3d(shifted, metrics.voxels(cube))
    assert iou["iou_3d_parity"] == pytest.approx(0.6, abs=1e-6)
    assert iou["iou_3d"] == pytest.approx(13 / 21, abs=1e-6)
    s = metrics.surface_metrics(shifted, cube, num_points=4000, seed=0)
    assert s["fscore"] < 0.6  # the faces that moved are 0.125 away, far beyond the 0.01 threshold
    assert 1e-3 < s["chamfer"] < 0.125**2 * 2  # every point moved by at most 0.125


def test_silhouette_iou():
    a = torch.zeros(2, 8, 8)
    b = torch.zeros(2, 8, 8)
    a[:, :4] = 1.0  # top half
    b[0, :4] = 0.9  # same half, soft values above 0.5
    b[1, 2:6] = 1.0  # rows 2..5: overlap 2 rows, union 6 rows
    assert metrics.silhouette_iou(a[:1], b[:1]) == 1.0
    assert metrics.silhouette_iou(a[1:], b[1:]) == pytest.approx(2 / 6)
    assert metrics.silhouette_iou(a, b) == pytest.approx((1 + 2 / 6) / 2)
