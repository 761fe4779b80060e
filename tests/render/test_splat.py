"""Gaussian splatting: geometry of one splat, compositing order, tiling vs a dense reference, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from runner.geometry.cameras import PinholeCamera
from runner.geometry.transforms import pose_vec_to_matrix
from runner.render.splat import PointCloud, SplatRenderer


def _camera(H=32, W=40, f=30.0, dtype=torch.float64, batch=1) -> PinholeCamera:
    """Camera at the world origin looking along +z (cam_from_world = identity)."""
    K = PinholeCamera.intrinsics(f, f, (W - 1) / 2, (H - 1) / 2, batch=batch, dtype=dtype)
    return PinholeCamera(K, torch.eye(4, dtype=dtype).expand(batch, 4, 4).clone(), (H, W))


def _dense_reference(r: SplatRenderer, points: PointCloud, cam: PinholeCamera):
    """Every pixel composites every point (no tiles), sorted by depth, one pixel at a time."""
    H, W = cam.image_size
    pix, z = cam.project(points.positions)
    f = math.sqrt(float(cam.K[0, 0, 0] * cam.K[0, 1, 1]))
    sigma = torch.sqrt((r.sigma_scale * points.radius * f / z) ** 2 + r.blur_px**2)
    floor = math.exp(-0.5 * r.cutoff**2)
    order = torch.argsort(z[0]).tolist()
    rgb = torch.zeros(H, W, 3, dtype=z.dtype)
    alpha = torch.zeros(H, W, dtype=z.dtype)
    depth = torch.zeros(H, W, dtype=z.dtype)
    for i in range(H):
        for j in range(W):
            trans, c, zs = 1.0, torch.zeros(3, dtype=z.dtype), 0.0
            for n in order:
                if z[0, n] <= r.near:
                    continue
                d2 = ((j - pix[0, n, 0]) ** 2 + (i - pix[0, n, 1]) ** 2) / sigma[0, n] ** 2
                g = max((math.exp(-0.5 * float(d2)) - floor) / (1 - floor), 0.0)
                a = min(float(points.opacity[0, n]) * g, r.max_alpha)
                c = c + trans * a * points.colors[0, n]
                zs += trans * a * float(z[0, n])
                trans *= 1 - a
            rgb[i, j] = c + trans * torch.tensor(r.background, dtype=z.dtype)
            alpha[i, j] = 1 - trans
            depth[i, j] = zs / (1 - trans) if 1 - trans > 1e-6 else 0.0
    return rgb, alpha, depth


def test_single_splat_centre_peak_and_mass():
    cam = _camera()
    r = SplatRenderer(sigma_scale=0.5, blur_px=0.0, cutoff=3.0)
    point = torch.tensor([[[0.1, -0.05, 2.0]]], dtype=torch.float64)
    radius, opacity = 0.4, 0.05
    out = r(PointCloud(point, torch.tensor([[radius]], dtype=torch.float64),
                       torch.ones(1, 1, 3, dtype=torch.float64), torch.tensor([[opacity]], dtype=torch.float64)), cam)
    u, v = cam.project(point)[0][0, 0]
    alpha = out.alpha[0]
    jj, ii = torch.meshgrid(torch.arange(40, dtype=torch.float64), torch.arange(32, dtype=torch.float64),
                            indexing="xy")
    centroid = torch.stack([(alpha * jj).sum(), (alpha * ii).sum()]) / alpha.sum()
    torch.testing.assert_close(centroid, torch.stack([u, v]), atol=1e-3, rtol=0)
    sigma = 0.5 * radius * 30.0 / 2.0  # 3 px
    assert alpha.max() <= opacity + 1e-12 and alpha.max() > 0.8 * opacity
    floor = math.exp(-0.5 * 9)
    mass = opacity * 2 * math.pi * sigma**2 * (1 - floor * 4.5 / (1 - floor))  # truncated, shifted Gaussian
    assert float(alpha.sum()) == pytest.approx(mass, rel=2e-3)
    torch.testing.assert_close(out.depth[0][alpha > 0], torch.full_like(alpha[alpha > 0], 2.0))


def test_peak_equals_opacity_on_a_pixel_centre():
    cam = _camera()
    # Projects exactly onto pixel (row 10, col 25): u = 30 x / z + 19.5 = 25, v = 30 y / z + 15.5 = 10.
    point = torch.tensor([[[5.5 * 3 / 30, -5.5 * 3 / 30, 3.0]]], dtype=torch.float64)
    out = SplatRenderer()(PointCloud(point, torch.full((1, 1, 1), 0.1, dtype=torch.float64),
                                     torch.tensor([[[0.2, 0.4, 0.6]]], dtype=torch.float64),
                                     torch.tensor([[0.7]], dtype=torch.float64)), cam)
    assert out.alpha[0].argmax().item() == 10 * 40 + 25
    assert float(out.alpha[0, 10, 25]) == pytest.approx(0.7, abs=1e-12)
    torch.testing.assert_close(out.rgb[0, 10, 25], 0.7 * torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64))


def test_near_red_point_occludes_far_blue_point_whatever_the_input_order():
    cam = _camera(H=33, W=41)  # the optical axis hits pixel (16, 20) at its centre
    r = SplatRenderer()
    red_near = [0.0, 0.0, 2.0]
    blue_far = [0.0, 0.0, 4.0]
    colors = torch.tensor([[[1.0, 0, 0], [0, 0, 1.0]]], dtype=torch.float64)
    radii = torch.tensor([[0.2, 0.4]], dtype=torch.float64)
    a = r(PointCloud(torch.tensor([[red_near, blue_far]], dtype=torch.float64), radii, colors), cam)
    b = r(PointCloud(torch.tensor([[blue_far, red_near]], dtype=torch.float64), radii.flip(-1), colors.flip(1)), cam)
    centre = a.rgb[0, 16, 20]
    assert float(centre[0]) == pytest.approx(0.99) and float(centre[2]) == pytest.approx(0.01 * 0.99)
    torch.testing.assert_close(a.rgb, b.rgb)
    torch.testing.assert_close(a.depth, b.depth)
    assert float(a.depth[0, 16, 20]) == pytest.approx((0.99 * 2.0 + 0.01 * 0.99 * 4.0) / (1 - 0.01**2))


def test_tiled_matches_dense_reference():
    g = torch.Generator().manual_seed(3)
    N = 12
    positions = torch.cat([torch.rand(1, N, 2, generator=g, dtype=torch.float64) * 2 - 1,
                           torch.rand(1, N, 1, generator=g, dtype=torch.float64) * 2 + 1.5], -1)
    points = PointCloud(positions, torch.rand(1, N, generator=g, dtype=torch.float64) * 0.1 + 0.05,
                        torch.rand(1, N, 3, generator=g, dtype=torch.float64),
                        torch.rand(1, N, generator=g, dtype=torch.float64))
    cam = _camera(H=13, W=19, f=12.0)
    r = SplatRenderer(tile_size=4, background=(0.1, 0.2, 0.3), max_chunk_elements=200)  # several chunks
    out = r(points, cam)
    rgb, alpha, depth = _dense_reference(r, points, cam)
    torch.testing.assert_close(out.rgb[0], rgb)
    torch.testing.assert_close(out.alpha[0], alpha)
    torch.testing.assert_close(out.depth[0], depth)


def test_gradcheck_positions_radii_colours_opacities_camera():
    H = W = 6
    positions0 = torch.tensor([[[0.05, 0.02, 2.0], [-0.15, 0.1, 2.6], [0.12, -0.12, 3.1]]], dtype=torch.float64)
    r = SplatRenderer(sigma_scale=0.5, blur_px=0.3, background=(0.2, 0.3, 0.4))

    def render(positions, radii, colors, opacities, pose, focal):
        K = torch.stack([torch.stack([focal, focal.new_zeros(()), focal.new_tensor(2.5)]),
                         torch.stack([focal.new_zeros(()), focal * 1.1, focal.new_tensor(2.5)]),
                         focal.new_tensor([0.0, 0.0, 1.0])])[None]
        cam = PinholeCamera(K, pose_vec_to_matrix(pose[None, :3], pose[None, 3:]), (H, W))
        out = r(PointCloud(positions, radii, colors, opacities), cam)
        return out.rgb, out.alpha, out.depth

    inputs = (positions0.clone().requires_grad_(),
              torch.tensor([[0.25, 0.3, 0.35]], dtype=torch.float64, requires_grad=True),
              torch.tensor([[[0.9, 0.1, 0.2], [0.1, 0.8, 0.3], [0.2, 0.3, 0.9]]], dtype=torch.float64,
                           requires_grad=True),
              torch.tensor([[0.6, 0.7, 0.8]], dtype=torch.float64, requires_grad=True),
              torch.tensor([0.02, -0.03, 0.01, 0.05, -0.02, 0.1], dtype=torch.float64, requires_grad=True),
              torch.tensor(6.0, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_batch_broadcast_and_points_behind_the_camera():
    cam = _camera(batch=2)
    points = PointCloud(torch.tensor([[[0.0, 0.0, 2.0], [0.0, 0.0, -2.0]]], dtype=torch.float64),
                        torch.tensor([[0.2, 5.0]], dtype=torch.float64), torch.ones(1, 2, 3, dtype=torch.float64))
    out = SplatRenderer()(points, cam)
    assert out.rgb.shape == (2, 32, 40, 3)
    torch.testing.assert_close(out.alpha[0], out.alpha[1])
    only_front = SplatRenderer()(PointCloud(points.positions[:, :1], points.radii[:, :1], points.colors[:, :1]),
                                 cam[0])
    torch.testing.assert_close(out.alpha[:1], only_front.alpha)  # the point behind is not drawn


def test_empty_cloud_is_background():
    out = SplatRenderer(background=(0.5, 0.25, 0.0))(
        PointCloud(torch.zeros(1, 0, 3, dtype=torch.float64), torch.zeros(1, 0, dtype=torch.float64),
                   torch.zeros(1, 0, 3, dtype=torch.float64)), _camera(H=4, W=5))
    torch.testing.assert_close(out.rgb, torch.tensor([0.5, 0.25, 0.0], dtype=torch.float64).expand(1, 4, 5, 3))
    assert out.alpha.abs().sum() == 0 and out.depth.abs().sum() == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"radii": torch.ones(1, 3, 2)}, "radii must be"),
    ({"radii": -torch.ones(1, 3)}, "radii must be > 0"),
    ({"colors": torch.ones(1, 3, 4)}, "colors must be"),
    ({"opacities": torch.ones(1, 2)}, "opacities must be"),
    ({"positions": torch.ones(3, 3)}, "positions must be"),
])
def test_bad_point_clouds(kwargs, message):
    fields = {"positions": torch.ones(1, 3, 3), "radii": torch.ones(1, 3), "colors": torch.ones(1, 3, 3)}
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        PointCloud(**fields)


@pytest.mark.parametrize("kwargs, message", [
    ({"sigma_scale": 0.0}, "sigma_scale"), ({"background": (0.0, 2.0, 0.0)}, "background"),
    ({"blur_px": -1.0}, "blur_px"), ({"max_alpha": 1.0}, "max_alpha"), ({"tile_size": 0}, "tile_size"),
])
def test_bad_renderer_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SplatRenderer(**kwargs)


def test_batch_and_dtype_mismatch():
    points = PointCloud(torch.ones(2, 3, 3), torch.ones(2, 3), torch.ones(2, 3, 3))
    with pytest.raises(ValueError, match="2 point clouds for 3 cameras"):
        SplatRenderer()(points, _camera(batch=3, dtype=torch.float32))
    with pytest.raises(ValueError, match="dtype"):
        SplatRenderer()(points, _camera(batch=2, dtype=torch.float64))
