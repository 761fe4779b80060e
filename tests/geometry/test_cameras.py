"""PinholeCamera (runner.geometry.cameras): projection round trips, conventions, look-at, resize, rays."""

import math

import pytest
import torch

from runner.geometry.cameras import PinholeCamera

IMAGE = (48, 64)  # (H, W)


def cameras(B=3, dtype=torch.float64, seed=0):
    """B cameras on random points of a sphere of radius 3 looking at random points near the origin."""
    g = torch.Generator().manual_seed(seed)
    eye = torch.nn.functional.normalize(torch.randn(B, 3, generator=g, dtype=dtype), dim=-1) * 3
    at = 0.2 * torch.randn(B, 3, generator=g, dtype=dtype)
    K = PinholeCamera.intrinsics(70.0, 60.0, 31.0, 24.5, batch=B, dtype=dtype)
    return PinholeCamera(K, PinholeCamera.look_at(eye, at), IMAGE), at


def points_near_origin(B, N=50, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return 0.5 * torch.randn(B, N, 3, generator=g, dtype=dtype)


def test_project_unproject_round_trip():
    cam, _ = cameras()
    p = points_near_origin(3)
    pix, depth = cam.project(p)
    assert pix.shape == (3, 50, 2) and depth.shape == (3, 50)
    assert (depth > 0).all()
    assert torch.allclose(cam.unproject(pix, depth), p, atol=1e-10)


def test_project_gradcheck_float64():
    cam, _ = cameras(B=2)
    p = points_near_origin(2, N=4).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: cam.project(x)[0], (p,))


def test_look_at_puts_the_target_at_the_principal_point_with_up_upwards():
    cam, at = cameras()
    pix, depth = cam.project(at[:, None])
    assert torch.allclose(pix[:, 0], cam.K[:, :2, 2], atol=1e-9)
    assert torch.allclose(depth[:, 0], (cam.center - at).norm(dim=-1), atol=1e-12)
    R = cam.cam_from_world[:, :3, :3]
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=R.dtype).expand(3, 3, 3), atol=1e-12)
    assert torch.allclose(torch.det(R), torch.ones(3, dtype=R.dtype))
    above, _ = cam.project(at[:, None] + torch.tensor([0.0, 0.1, 0.0], dtype=at.dtype))
    assert (above[:, 0, 1] < cam.K[:, 1, 2]).all()  # world +y appears higher in the image (smaller v)


def test_orbit_azimuth_zero_looks_down_minus_z():
    pose = PinholeCamera.orbit(torch.tensor([0.0, 90.0 - 1e-4]), torch.tensor([0.0, 0.0]), 2.5)
    cam = PinholeCamera(PinholeCamera.intrinsics(50.0, 50.0, 32.0, 24.0, batch=2, dtype=pose.dtype), pose, IMAGE)
    assert torch.allclose(cam.center[0], torch.tensor([0.0, 0.0, 2.5]), atol=1e-6)
    assert torch.allclose(cam.center[1], torch.tensor([0.0, 2.5, 0.0]), atol=1e-4)
    forward = cam.world_from_cam[0, :3, 2]
    assert torch.allclose(forward, torch.tensor([0.0, 0.0, -1.0]), atol=1e-6)


def test_opengl_round_trip_and_axes():
    cam, _ = cameras()
    gl = cam.to_opengl()
    back = PinholeCamera.from_opengl(cam.K, gl, IMAGE)
    assert torch.equal(back.cam_from_world, cam.cam_from_world)
    p = points_near_origin(3)
    p_cv = cam.world_to_cam(p)
    p_gl = p @ gl[:, :3, :3].transpose(1, 2) + gl[:, None, :3, 3]
    assert torch.allclose(p_gl, p_cv * torch.tensor([1.0, -1.0, -1.0], dtype=p.dtype), atol=1e-12)
    assert (p_gl[..., 2] < 0).all()  # OpenGL cameras look along -z


def test_pytorch3d_round_trip_and_axes():
    cam, _ = cameras()
    R, T = cam.to_pytorch3d()
    assert R.shape == (3, 3, 3) and T.shape == (3, 3)
    back = PinholeCamera.from_pytorch3d(cam.K, R, T, IMAGE)
    assert torch.allclose(back.cam_from_world, cam.cam_from_world, atol=1e-15)
    p = points_near_origin(3)
    p_p3d = p @ R + T[:, None]  # PyTorch3D's row-vector convention
    assert torch.allclose(p_p3d, cam.world_to_cam(p) * torch.tensor([-1.0, -1.0, 1.0], dtype=p.dtype), atol=1e-12)


@pytest.mark.parametrize("new_size", [(24, 32), (96, 128), (48, 100)])
def test_resized_keeps_a_projected_point_at_the_scaled_position(new_size):
    cam, _ = cameras()
    p = points_near_origin(3)
    pix, _ = cam.project(p)
    pix_new, _ = cam.resized(new_size).project(p)
    scale = torch.tensor([new_size[1] / IMAGE[1], new_size[0] / IMAGE[0]], dtype=p.dtype)
    # Pixel centres sit at integers, so the image edge is at -0.5: u' + 0.5 = (u + 0.5) * scale.
    assert torch.allclose(pix_new + 0.5, (pix + 0.5) * scale, atol=1e-9)
    assert cam.resized(new_size).image_size == new_size


def test_pixel_rays_pass_through_the_projected_points():
    cam, _ = cameras(B=2)
    origins, dirs = cam.pixel_rays()
    H, W = IMAGE
    assert origins.shape == (2, H, W, 3) and dirs.shape == (2, H, W, 3)
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(2, H, W, dtype=dirs.dtype))
    rows, cols = torch.tensor([0, 10, 47]), torch.tensor([0, 33, 63])
    pix = torch.stack([cols, rows], -1).to(dirs.dtype).expand(2, 3, 2)
    depth = torch.tensor([[1.0, 2.0, 3.5], [0.5, 4.0, 2.0]], dtype=dirs.dtype)
    points = cam.unproject(pix, depth)  # points that project to those pixel centres
    o, d = origins[:, rows, cols], dirs[:, rows, cols]
    t = ((points - o) * d).sum(-1, keepdim=True)
    assert torch.allclose(o + t * d, points, atol=1e-10)
    assert torch.allclose(cam.project(o + t * d)[0], pix, atol=1e-8)


def test_intrinsics_from_fov_maps_the_image_edge_to_half_the_fov():
    K = PinholeCamera.intrinsics_from_fov(60.0, IMAGE, dtype=torch.float64)
    cam = PinholeCamera(K, torch.eye(4, dtype=torch.float64)[None], IMAGE)
    top_edge = torch.tensor([[[K[0, 0, 2].item(), -0.5]]], dtype=torch.float64)
    ray = cam.unproject(top_edge, torch.ones(1, 1, dtype=torch.float64))[0, 0]
    assert math.degrees(math.atan2(-ray[1].item(), ray[2].item())) == pytest.approx(30.0)


def test_bad_camera_inputs_raise():
    K = PinholeCamera.intrinsics(1.0, 1.0, 0.0, 0.0, batch=2)
    with pytest.raises(ValueError, match=r"K must be \(B, 3, 3\)"):
        PinholeCamera(K[0], torch.eye(4).expand(2, 4, 4), IMAGE)
    with pytest.raises(ValueError, match=r"cam_from_world must be \(B, 4, 4\)"):
        PinholeCamera(K, torch.eye(3).expand(2, 3, 3), IMAGE)
    with pytest.raises(ValueError, match="batch sizes differ"):
        PinholeCamera(K, torch.eye(4).expand(3, 4, 4), IMAGE)
