"""SoftMeshRenderer: gradients, soft -> hard limit, analytic areas and depths, textures, lights, pose recovery."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from runner.geometry.cameras import PinholeCamera
from runner.geometry.mesh_io import load_obj
from runner.geometry.meshes import Meshes
from runner.geometry.primitives import icosphere
from runner.losses.silhouette import silhouette_l2, soft_iou
from runner.render.shading import DirectionalLight
from runner.render.soft_mesh import SoftMeshRenderer
from tests.conftest import shared_data

F64 = torch.float64


def camera(size=(8, 8), f=8.0, dtype=F64, pose=None, batch=1):
    H, W = size
    K = PinholeCamera.intrinsics(f, f, (W - 1) / 2, (H - 1) / 2, batch, dtype=dtype)
    pose = torch.eye(4, dtype=dtype).expand(batch, 4, 4).clone() if pose is None else pose
    return PinholeCamera(K, pose, size)


def two_triangles():
    """Two overlapping coloured triangles at depth ~2-3 in front of an identity camera."""
    verts = torch.tensor([[-0.6, -0.5, 2.0], [0.7, -0.4, 2.2], [-0.1, 0.6, 2.1],
                          [-0.4, 0.1, 2.8], [0.5, 0.5, 2.6], [0.3, -0.6, 3.0]], dtype=F64)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    colors = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1]], dtype=F64)
    return verts, faces, colors


def test_gradcheck_vertices_and_colors():
    verts, faces, colors = two_triangles()
    r = SoftMeshRenderer(sigma=2e-2, gamma=0.05, faces_per_pixel=2, shading="unlit")
    cams = camera()

    def f(v, c):
        out = r(Meshes([v], [faces], verts_colors=[c]), cams)
        return out.alpha, out.rgb, out.depth

    assert torch.autograd.gradcheck(f, (verts.requires_grad_(True), colors.requires_grad_(True)), fast_mode=True)


def test_gradcheck_camera_pose_and_intrinsics():
    verts, faces, colors = two_triangles()
    r = SoftMeshRenderer(sigma=2e-2, gamma=0.05, faces_per_pixel=2, shading="phong",
                         lights=(DirectionalLight((0.3, -0.5, -1.0)), DirectionalLight((1, 0, 0), frame="world")))
    meshes = Meshes([verts], [faces], verts_colors=[colors])
    base = camera()

    def f(pose, K):
        out = r(meshes, PinholeCamera(K, pose, base.image_size))
        return out.alpha, out.rgb

    pose = base.cam_from_world.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (pose, base.K.clone().requires_grad_(True)), fast_mode=True)


def test_soft_limit_equals_hard():
    verts, faces, colors = two_triangles()
    meshes = Meshes([verts], [faces], verts_colors=[colors])
    cams = camera((16, 16), f=16.0)
    hard = SoftMeshRenderer(hard=True, shading="unlit")(meshes, cams)
    soft = SoftMeshRenderer(sigma=1e-7, gamma=1e-6, shading="unlit")(meshes, cams)
    assert 0.1 < hard.alpha.mean() < 0.8
    torch.testing.assert_close(soft.alpha, hard.alpha, atol=1e-3, rtol=0)
    torch.testing.assert_close(soft.rgb, hard.rgb, atol=1e-3, rtol=0)
    torch.testing.assert_close(soft.depth, hard.depth, atol=1e-6, rtol=0)


@pytest.mark.parametrize("hard", [True, False])
def test_sphere_silhouette_area_is_the_projected_disc(hard):
    """A unit sphere at distance d projects to a disc of radius f / sqrt(d^2 - 1) pixels."""
    S, f, d = 64, 60.0, 3.0
    pose = PinholeCamera.look_at(torch.tensor([[0.0, 0.0, d]]), torch.zeros(1, 3))
    cams = PinholeCamera(PinholeCamera.intrinsics(f, f, (S - 1) / 2, (S - 1) / 2), pose, (S, S))
    r = SoftMeshRenderer(hard=hard, supersample=2 if hard else 1, sigma=1e-5, shading="silhouette")
    alpha = r(icosphere(4), cams).alpha
    radius = f / math.sqrt(d * d - 1)
    assert abs(alpha.sum().item() - math.pi * radius**2) < 0.5 * 2 * math.pi * radius  # half a pixel of rim


def test_depth_of_a_tilted_plane_is_analytic():
    S, f = 24, 20.0
    cams = camera((S, S), f=f, dtype=torch.float32)
    n, c = torch.tensor([0.3, -0.2, 1.0]), 2.5  # plane n . X = c
    corners = torch.tensor([[-3.0, -3.0], [3.0, -3.0], [3.0, 3.0], [-3.0, 3.0]])
    z = (c - corners @ n[:2]) / n[2]
    verts = torch.cat([corners, z[:, None]], 1)
    quad = Meshes([verts], [torch.tensor([[0, 1, 2], [0, 2, 3]])])
    v, u = torch.meshgrid(torch.arange(S, dtype=torch.float32), torch.arange(S, dtype=torch.float32), indexing="ij")
    ray = torch.stack([(u - (S - 1) / 2) / f, (v - (S - 1) / 2) / f, torch.ones_like(u)], -1)
    expected = c / (ray @ n)
    hard = SoftMeshRenderer(hard=True)(quad, cams)
    assert hard.alpha.all()
    torch.testing.assert_close(hard.depth[0], expected, rtol=1e-5, atol=1e-5)
    soft = SoftMeshRenderer(sigma=1e-4)(quad, cams)
    torch.testing.assert_close(soft.depth[0], expected, rtol=1e-5, atol=1e-5)


def test_texture_and_vertex_colors():
    """An unlit quad filling the view shows its 2 x 2 texture's quadrants; vertex colours interpolate."""
    verts = torch.tensor([[-1.0, -1.0, 2.0], [1.0, -1.0, 2.0], [1.0, 1.0, 2.0], [-1.0, 1.0, 2.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    uvs = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])  # image top (v = -1) is uv v = 1
    texture = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]], [[0, 0, 1.0], [1.0, 1.0, 1.0]]])
    meshes = Meshes([verts], [faces], verts_uvs=[uvs], faces_uvs=[faces], texture=[texture])
    cams = camera((16, 16), f=16.0, dtype=torch.float32)
    rgb = SoftMeshRenderer(hard=True, shading="unlit")(meshes, cams).rgb[0]
    torch.testing.assert_close(rgb[1, 1], texture[0, 0])
    torch.testing.assert_close(rgb[1, 14], texture[0, 1])
    torch.testing.assert_close(rgb[14, 1], texture[1, 0])
    torch.testing.assert_close(rgb[14, 14], texture[1, 1])
    grey = Meshes([verts], [faces], verts_colors=[torch.tensor([[0.0] * 3, [0.0] * 3, [1.0] * 3, [1.0] * 3])])
    col = SoftMeshRenderer(hard=True, shading="unlit")(grey, cams).rgb[0, :, 8, 0]
    assert (col.diff() > 0).all()  # brightens from top (v = -1, black) to bottom (v = +1, white)


def test_headlight_phong_is_brightest_facing_the_camera_and_frames_agree():
    pose = PinholeCamera.look_at(torch.tensor([[0.0, 0.0, -3.0]]), torch.zeros(1, 3))
    cams = PinholeCamera(PinholeCamera.intrinsics(40.0, 40.0, 15.5, 15.5), pose, (32, 32))
    sphere = icosphere(3)
    cam_light = SoftMeshRenderer(hard=True, lights=(DirectionalLight((0.0, 0.0, -1.0)),))(sphere, cams).rgb[0, ..., 0]
    assert cam_light[15:17, 15:17].min() > cam_light[15, 8] > cam_light[15, 4] > 0.5  # ambient 0.5 everywhere
    # The camera at -3 z looks along +z: its -z axis is world -z.
    world = SoftMeshRenderer(hard=True, lights=(DirectionalLight((0.0, 0.0, -1.0), frame="world"),))
    torch.testing.assert_close(world(sphere, cams).rgb[0, ..., 0], cam_light)


def test_supersampled_hard_render_is_the_block_mean():
    verts, faces, colors = two_triangles()
    meshes = Meshes([verts], [faces], verts_colors=[colors])
    cams = camera((8, 8))
    fine = SoftMeshRenderer(hard=True, shading="unlit")(meshes, cams.resized((24, 24)))
    coarse = SoftMeshRenderer(hard=True, shading="unlit", supersample=3)(meshes, cams)
    torch.testing.assert_close(coarse.rgb, fine.rgb.reshape(1, 8, 3, 8, 3, 3).mean((2, 4)))
    torch.testing.assert_close(coarse.alpha, fine.alpha.reshape(1, 8, 3, 8, 3).mean((2, 4)))
    assert ((coarse.alpha > 0) & (coarse.alpha < 1)).any()


def test_batch_of_cameras_and_back_face_culling():
    sphere = icosphere(2).extend(2)
    poses = PinholeCamera.orbit(torch.tensor([0.0, 30.0]), torch.tensor([0.0, 90.0]), 3.0)
    cams = PinholeCamera(PinholeCamera.intrinsics(20.0, 20.0, 7.5, 7.5, 2), poses, (16, 16))
    both = SoftMeshRenderer(shading="silhouette")(sphere, cams)
    single = SoftMeshRenderer(shading="silhouette")(icosphere(2), cams[1])
    torch.testing.assert_close(both.alpha[1:], single.alpha)
    culled = SoftMeshRenderer(shading="silhouette", cull_backfaces=True)(sphere, cams)
    assert (culled.alpha <= both.alpha + 1e-6).all() and (culled.alpha < both.alpha - 1e-3).any()  # rims fade
    hard = SoftMeshRenderer(hard=True, cull_backfaces=True)(sphere, cams).alpha
    torch.testing.assert_close(hard, SoftMeshRenderer(hard=True)(sphere, cams).alpha)  # back faces are hidden
    # A quad whose right-hand normal points away from the camera (+z) is a back face; flipped it is not.
    quad = torch.tensor([[-3.0, -3.0, 2.0], [3.0, -3.0, 2.0], [3.0, 3.0, 2.0], [-3.0, 3.0, 2.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    cull, front = SoftMeshRenderer(cull_backfaces=True, hard=True), camera((16, 16), dtype=torch.float32)
    assert cull(Meshes([quad], [faces]), front).alpha.sum() == 0
    assert cull(Meshes([quad], [faces.flip(1)]), front).alpha.all()


def test_bad_input():
    verts, faces, _ = two_triangles()
    r = SoftMeshRenderer()
    with pytest.raises(ValueError, match="2 cameras"):
        r(Meshes([verts], [faces]), camera(batch=2))
    with pytest.raises(ValueError, match="no faces"):
        r(Meshes([verts], [torch.zeros(0, 3, dtype=torch.long)]), camera())
    with pytest.raises(ValueError, match="dtype"):
        r(Meshes([verts.float()], [faces]), camera())
    with pytest.raises(ValueError, match="sigma"):
        SoftMeshRenderer(sigma=0.0)
    with pytest.raises(ValueError, match="shading"):
        SoftMeshRenderer(shading="toon")
    with pytest.raises(ValueError, match="direction"):
        DirectionalLight((0.0, 0.0, 0.0))


def test_soft_iou_and_l2():
    a = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    b = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    assert soft_iou(a, a).abs() < 1e-6
    torch.testing.assert_close(soft_iou(a, b), torch.tensor(1 - 1 / 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(soft_iou(torch.cat([a, a]), torch.cat([a, b])), torch.tensor((1 - 1 / 3) / 2),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(silhouette_l2(a, b), torch.tensor(0.5))
    with pytest.raises(ValueError, match="alpha_pred"):
        soft_iou(a, b[0])


@pytest.mark.slow
def test_teapot_camera_position_recovery():
    """PyTorch3D's camera-position tutorial: fit the eye of a look-at camera to a teapot's silhouette."""
    teapot = load_obj(shared_data("meshes", "teapot.obj"), load_textures=False)
    S = 48
    K = PinholeCamera.intrinsics_from_fov(40.0, (S, S))

    def cams(eye):
        return PinholeCamera(K, PinholeCamera.look_at(eye, torch.tensor([[0.0, 0.5, 0.0]])), (S, S))

    r = SoftMeshRenderer(sigma=3e-4, shading="silhouette")
    target_eye = torch.tensor([[1.5, 2.0, 2.6]])
    target = r(teapot, cams(target_eye)).alpha
    eye = torch.tensor([[2.3, 2.6, 2.0]], requires_grad=True)  # 1.13 away, 22 degrees off
    opt = torch.optim.Adam([eye], lr=0.05)
    for _ in range(120):
        opt.zero_grad()
        silhouette_l2(r(teapot, cams(eye)).alpha, target).backward()
        opt.step()
    assert (eye - target_eye).norm().item() < 0.02


@pytest.mark.slow
def test_armadillo_256_has_bounded_memory():
    """The 100k-face armadillo at 256 x 256, forward and backward, peaks under 2 GB of resident memory."""
    clear_refs, status = Path("/proc/self/clear_refs"), Path("/proc/self/status")
    if not clear_refs.exists():
        pytest.skip("peak RSS reset needs Linux /proc/self/clear_refs")
    mesh = load_obj(shared_data("meshes", "armadillo.obj"), load_textures=False)
    v = mesh.verts[0] - mesh.verts[0].mean(0)
    v = (v / v.norm(dim=1).max()).requires_grad_(True)
    cams = PinholeCamera(PinholeCamera.intrinsics_from_fov(60.0, (256, 256)),
                         PinholeCamera.orbit(torch.tensor([0.0]), torch.tensor([0.0]), 2.2), (256, 256))
    clear_refs.write_text("5")  # VmHWM := current RSS
    out = SoftMeshRenderer(shading="phong")(mesh.with_verts([v]), cams)
    (out.rgb.mean() + out.alpha.mean()).backward()
    peak_kb = next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmHWM"))
    assert 1000 < out.alpha.sum() < 30000
    assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0
    assert peak_kb / 1024 < 2048
