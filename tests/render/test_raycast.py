"""Analytic ray caster: exact depth of planes and spheres, slab test vs brute force, gradients vs finite
differences, textures, street scenes, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from runner.geometry.cameras import PinholeCamera
from runner.geometry.transforms import axis_angle_to_matrix, pose_vec_to_matrix
from runner.render.raycast import (
    Boxes,
    Planes,
    PrimitiveScene,
    RaycastRenderer,
    Spheres,
    intersect_boxes,
    intersect_planes,
    intersect_spheres,
    nearest_hits,
)
from runner.render.textures import Material, TextureKind, evaluate_texture
from tasks.depth_from_video.streets import forward_camera_path, make_street_scene

F64 = torch.float64


def _material(kinds: list[TextureKind], dtype=F64, seed: int = 0) -> Material:
    P = len(kinds)
    g = torch.Generator().manual_seed(seed)
    return Material(torch.tensor([[int(k) for k in kinds]]), torch.rand(1, P, 3, generator=g, dtype=dtype) * 0.6 + 0.3,
                    torch.rand(1, P, 3, generator=g, dtype=dtype) * 0.3, torch.full((1, P), 0.7, dtype=dtype),
                    torch.arange(P).reshape(1, P) + 11 * seed)


def _ground(height: float = 0.0, kind=TextureKind.CHECKER, dtype=F64) -> Planes:
    return Planes(torch.tensor([[[0.0, height, 0.0]]], dtype=dtype), torch.tensor([[[0.0, 1.0, 0.0]]], dtype=dtype),
                  _material([kind], dtype))


def _camera(eye, at, H=6, W=6, f=None, dtype=F64) -> PinholeCamera:
    f = f if f is not None else 1.2 * W
    K = PinholeCamera.intrinsics(f, f, (W - 1) / 2, (H - 1) / 2, dtype=dtype)
    pose = PinholeCamera.look_at(torch.tensor([eye], dtype=dtype), torch.tensor([at], dtype=dtype))
    return PinholeCamera(K, pose, (H, W))


# ------------------------------------------------------------------------------------------ geometry
def test_ground_plane_depth_is_analytic_everywhere():
    cam = _camera([0.3, 1.5, -1.0], [0.5, 0.2, 6.0], H=24, W=32)
    out = RaycastRenderer(shadows=False)(PrimitiveScene.create(planes=_ground()), cam)
    # Depth z of the ray through pixel (u, v) meeting y = 0: centre + z R^T K^-1 (u, v, 1), y-component 0.
    v, u = torch.meshgrid(torch.arange(24, dtype=F64), torch.arange(32, dtype=F64), indexing="ij")
    rays_cam = torch.stack([(u - cam.K[0, 0, 2]) / cam.K[0, 0, 0], (v - cam.K[0, 1, 2]) / cam.K[0, 1, 1],
                            torch.ones_like(u)], -1)
    rays_world = rays_cam @ cam.cam_from_world[0, :3, :3]  # R^T d as row vectors
    z = -cam.center[0, 1] / rays_world[..., 1]
    sees_ground = z > 0
    assert sees_ground.any() and (~sees_ground).any()
    torch.testing.assert_close(out.depth[0][sees_ground], z[sees_ground])
    assert (out.alpha[0] == sees_ground.to(F64)).all()
    assert (out.depth[0][~sees_ground] == 0).all()


def test_sphere_centre_depth_and_silhouette_area():
    H = W = 61
    f = 50.0
    centre, radius = torch.tensor([[[0.0, 0.0, 5.0]]], dtype=F64), 1.0
    scene = PrimitiveScene.create(spheres=Spheres(centre, torch.tensor([[radius]], dtype=F64),
                                                  _material([TextureKind.NOISE])))
    K = PinholeCamera.intrinsics(f, f, 30.0, 30.0, dtype=F64)
    cam = PinholeCamera(K, torch.eye(4, dtype=F64)[None], (H, W))
    out = RaycastRenderer(shadows=False)(scene, cam)
    assert float(out.depth[0, 30, 30]) == pytest.approx(4.0, abs=1e-12)
    # A sphere seen head-on projects to a disc of radius f r / sqrt(d^2 - r^2) pixels.
    rho = f * radius / math.sqrt(5.0**2 - radius**2)
    assert float(out.alpha.sum()) == pytest.approx(math.pi * rho**2, rel=0.03)  # whole pixels
    soft = RaycastRenderer(shadows=False, supersample=4)(scene, cam)
    assert float(soft.alpha.sum()) == pytest.approx(math.pi * rho**2, rel=0.003)  # 16 samples per pixel
    # and every covered pixel has the analytic depth of its ray
    hit = out.alpha[0] > 0
    v, u = torch.meshgrid(torch.arange(H, dtype=F64), torch.arange(W, dtype=F64), indexing="ij")
    d = torch.nn.functional.normalize(torch.stack([(u - 30) / f, (v - 30) / f, torch.ones_like(u)], -1), dim=-1)
    b = -5.0 * d[..., 2]
    t = -b - torch.sqrt((b * b - 24.0).clamp(min=0))
    torch.testing.assert_close(out.depth[0][hit], (t * d[..., 2])[hit])


def _brute_force_box(o, d, center, half, R):
    """Nearest crossing of the 6 face rectangles, one ray and one box at a time."""
    best = math.inf
    for k in range(3):
        for sign in (-1.0, 1.0):
            n = sign * R[:, k]
            p0 = center + sign * half[k] * R[:, k]
            denom = float(d @ n)
            if abs(denom) < 1e-12:
                continue
            t = float((p0 - o) @ n) / denom
            if t <= 1e-4:
                continue
            q = R.T @ (o + t * d - center)
            if all(abs(float(q[j])) <= half[j] + 1e-9 for j in range(3) if j != k):
                best = min(best, t)
    return best


def test_slab_intersection_matches_brute_force_faces():
    g = torch.Generator().manual_seed(0)
    B, N, P = 1, 300, 4
    origins = torch.randn(B, N, 3, generator=g, dtype=F64) * 0.5 + torch.tensor([0.0, 0.0, -6.0], dtype=F64)
    dirs = torch.nn.functional.normalize(torch.randn(B, N, 3, generator=g, dtype=F64) * 0.25
                                         + torch.tensor([0.0, 0.0, 1.0], dtype=F64), dim=-1)
    dirs[0, :10] = torch.tensor([0.0, 0.0, 1.0], dtype=F64)  # rays parallel to four slabs
    center = torch.randn(B, P, 3, generator=g, dtype=F64)
    half = torch.rand(B, P, 3, generator=g, dtype=F64) + 0.3
    R = axis_angle_to_matrix(torch.randn(B, P, 3, generator=g, dtype=F64))
    R[0, 0] = torch.eye(3, dtype=F64)  # one axis-aligned box
    t = intersect_boxes(origins, dirs, center, half, R)
    ref = torch.tensor([[[_brute_force_box(origins[0, n], dirs[0, n], center[0, p], half[0, p].tolist(), R[0, p])
                          for p in range(P)] for n in range(N)]], dtype=F64)
    assert torch.isfinite(ref).sum() > 100 and torch.isinf(ref).sum() > 100
    assert (torch.isfinite(t) == torch.isfinite(ref)).all()
    torch.testing.assert_close(t[torch.isfinite(t)], ref[torch.isfinite(ref)])


def test_culled_visibility_matches_testing_every_primitive():
    scene = make_street_scene(4, dtype=F64)
    poses = forward_camera_path(4, 30, dtype=F64)
    cam = PinholeCamera(PinholeCamera.intrinsics(40.0, 40.0, 31.5, 11.5, dtype=F64), poses[29:], (24, 64))
    o, d = (x.reshape(1, -1, 3) for x in cam.pixel_rays())
    shadow_d = torch.nn.functional.normalize(torch.tensor([0.4, 1.0, -0.3], dtype=F64), dim=0).expand_as(d)
    shadow_o = o + 30.0 * d  # rays from scattered points, all parallel
    p, b, s = scene.planes, scene.boxes, scene.spheres
    for origins, dirs in ((o, d), (shadow_o, shadow_d)):
        t = torch.cat([intersect_planes(origins, dirs, p.point, p.normal),
                       intersect_boxes(origins, dirs, b.center, b.half_size, b.rotation),
                       intersect_spheres(origins, dirs, s.center, s.radius)], -1)
        t_min, arg = t.min(-1)
        expected = torch.where(torch.isfinite(t_min), arg, -1)
        assert len(expected.unique()) > 4
        assert torch.equal(nearest_hits(scene, origins, dirs, chunk_size=64), expected)


def test_box_depth_and_face_normal_shading():
    box = Boxes(torch.tensor([[[0.0, 0.0, 4.0]]], dtype=F64), torch.tensor([[[1.0, 1.0, 0.5]]], dtype=F64),
                torch.eye(3, dtype=F64)[None, None], Material.constant(torch.tensor([[[0.5, 0.5, 0.5]]], dtype=F64)))
    K = PinholeCamera.intrinsics(10.0, 10.0, 2.0, 2.0, dtype=F64)
    cam = PinholeCamera(K, torch.eye(4, dtype=F64)[None], (5, 5))
    out = RaycastRenderer(ambient=0.2, light_dir=(0.0, 0.0, -1.0), shadows=False)(PrimitiveScene.create(boxes=box), cam)
    assert (out.alpha == 1).all()
    torch.testing.assert_close(out.depth, torch.full_like(out.depth, 3.5))  # the front face z = 3.5
    torch.testing.assert_close(out.rgb, torch.full_like(out.rgb, 0.5))  # facing the light: full Lambert


def test_hard_shadow_of_a_sphere_on_the_ground():
    scene = PrimitiveScene.create(planes=_ground(kind=TextureKind.CONSTANT),
                                  spheres=Spheres(torch.tensor([[[0.0, 1.0, 5.0]]], dtype=F64),
                                                  torch.tensor([[0.5]], dtype=F64), _material([TextureKind.NOISE])))
    cam = _camera([0.0, 3.0, 0.0], [0.0, 0.0, 5.0], H=32, W=32)
    lit = RaycastRenderer(light_dir=(0.0, 1.0, 0.0), shadows=False)(scene, cam)
    shaded = RaycastRenderer(light_dir=(0.0, 1.0, 0.0), shadows=True)(scene, cam)
    ground_point = torch.tensor([[[0.0, 0.0, 5.0]]], dtype=F64)  # straight under the sphere, hidden from the light
    u, v = cam.project(ground_point)[0][0, 0].round().long().tolist()
    assert shaded.depth[0, v, u] == lit.depth[0, v, u]  # does the pixel see the ground, not the sphere
    assert float(shaded.rgb[0, v, u].sum()) < 0.5 * float(lit.rgb[0, v, u].sum())
    assert float(shaded.rgb[0, 0, 0].sum()) == pytest.approx(float(lit.rgb[0, 0, 0].sum()))  # far from the shadow


def test_supersampling_softens_edges_and_keeps_coverage():
    scene = PrimitiveScene.create(spheres=Spheres(torch.tensor([[[0.0, 0.0, 5.0]]], dtype=F64),
                                                  torch.tensor([[1.0]], dtype=F64), _material([TextureKind.CHECKER])))
    cam = _camera([0.0, 0.0, 0.0], [0.0, 0.0, 1.0], H=20, W=20, f=30.0)
    hard = RaycastRenderer(shadows=False)(scene, cam)
    soft = RaycastRenderer(shadows=False, supersample=4)(scene, cam)
    assert set(hard.alpha.unique().tolist()) == {0.0, 1.0}
    assert ((soft.alpha > 0) & (soft.alpha < 1)).sum() > 10
    assert float(soft.alpha.sum()) == pytest.approx(float(hard.alpha.sum()), rel=0.05)
    edge = (soft.alpha > 0) & (soft.alpha < 1)
    assert (soft.depth[edge] > 4.0).all() and (soft.depth[soft.alpha == 0] == 0).all()


def test_batch_of_cameras_shares_one_scene():
    scene = PrimitiveScene.create(planes=_ground())
    poses = forward_camera_path(0, 3, dtype=F64)
    K = PinholeCamera.intrinsics(5.0, 5.0, 3.5, 2.5, batch=3, dtype=F64)
    out = RaycastRenderer()(scene, PinholeCamera(K, poses, (6, 8)))
    single = RaycastRenderer()(scene, PinholeCamera(K[2:], poses[2:], (6, 8)))
    assert out.rgb.shape == (3, 6, 8, 3)
    torch.testing.assert_close(out.rgb[2:], single.rgb)
    torch.testing.assert_close(out.depth[2:], single.depth)


# ------------------------------------------------------------------------------------------ gradients
def _interior(scene: PrimitiveScene, cam: PinholeCamera, S: int = 5) -> torch.Tensor:
    """(H, W) pixels whose whole footprint (S x S sub-pixel rays) sees one primitive: away from edges."""
    H, W = cam.image_size
    o, d = cam.resized((H * S, W * S)).pixel_rays()
    ids = nearest_hits(scene, o.reshape(1, -1, 3), d.reshape(1, -1, 3), 4096).reshape(H, S, W, S)
    return (ids == ids[:, S // 2, None, :, S // 2, None]).all(3).all(1) & (ids[:, S // 2, :, S // 2] >= 0)


def _gradcheck_scene(sphere_center, sphere_radius, plane_height, box_center, box_half) -> PrimitiveScene:
    return PrimitiveScene.create(
        planes=Planes(torch.stack([torch.zeros_like(plane_height), plane_height, torch.zeros_like(plane_height)])
                      [None, None], torch.tensor([[[0.0, 1.0, 0.0]]], dtype=F64), _material([TextureKind.NOISE])),
        boxes=Boxes(box_center[None, None], box_half[None, None],
                    axis_angle_to_matrix(torch.tensor([[[0.0, 0.4, 0.0]]], dtype=F64)),
                    _material([TextureKind.CHECKER], seed=1)),
        spheres=Spheres(sphere_center[None, None], sphere_radius[None, None], _material([TextureKind.CHECKER], seed=2)))


_SCENE_PARAMS = (torch.tensor([-0.45, 0.6, 3.0], dtype=F64), torch.tensor(0.6, dtype=F64), torch.tensor(0.0, dtype=F64),
                 torch.tensor([0.55, 0.6, 3.2], dtype=F64), torch.tensor([0.45, 0.6, 0.45], dtype=F64))


def _gradcheck_camera(pose_vec: torch.Tensor, focal: torch.Tensor) -> PinholeCamera:
    zero, c = focal.new_zeros(()), focal.new_tensor(2.5)
    K = torch.stack([torch.stack([focal, zero, c]), torch.stack([zero, focal, c]),
                     focal.new_tensor([0.0, 0.0, 1.0])])[None]
    eye, at = torch.tensor([[0.0, 1.0, -0.5]], dtype=F64), torch.tensor([[0.0, 0.5, 3.0]], dtype=F64)
    base = PinholeCamera.look_at(eye, at)
    return PinholeCamera(K, pose_vec_to_matrix(pose_vec[None, :3], pose_vec[None, 3:]) @ base, (6, 6))


_POSE = torch.tensor([0.03, -0.02, 0.01, 0.05, -0.03, 0.1], dtype=F64)  # camera motion: axis-angle [rad], t [m]
_FOCAL = torch.tensor(8.0, dtype=F64)


@pytest.mark.slow  # ~1 s: full Jacobians, 11 inputs x 17 pixels x 4 outputs
@pytest.mark.parametrize("shadows", [False, True])
def test_gradcheck_depth_and_rgb_wrt_primitives(shadows):
    renderer = RaycastRenderer(shadows=shadows, light_dir=(0.3, 1.0, -0.5))
    cam = _gradcheck_camera(_POSE, _FOCAL)
    keep = _interior(_gradcheck_scene(*_SCENE_PARAMS), cam)
    assert keep.sum() >= 8

    def render(*params):
        out = renderer(_gradcheck_scene(*params), cam)
        return out.depth[0][keep], out.rgb[0][keep]

    inputs = tuple(p.clone().requires_grad_() for p in _SCENE_PARAMS)
    depth, rgb = render(*inputs)
    assert all(g.abs().sum() > 0 for g in torch.autograd.grad(depth.sum() + rgb.sum(), inputs, allow_unused=False))
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.slow  # ~1 s: full Jacobians
def test_gradcheck_depth_and_rgb_wrt_camera():
    renderer = RaycastRenderer(shadows=False, light_dir=(0.3, 1.0, -0.5))
    scene = _gradcheck_scene(*_SCENE_PARAMS)
    keep = _interior(scene, _gradcheck_camera(_POSE, _FOCAL))
    assert keep.sum() >= 8

    def render(pose_vec, focal):
        out = renderer(scene, _gradcheck_camera(pose_vec, focal))
        return out.depth[0][keep], out.rgb[0][keep]

    inputs = (_POSE.clone().requires_grad_(), _FOCAL.clone().requires_grad_())
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------------ textures
@pytest.mark.parametrize("kind", list(TextureKind)[1:])
def test_textures_are_seeded_detailed_and_bounded(kind):
    g = torch.Generator().manual_seed(0)
    uv = torch.rand(2000, 2, generator=g, dtype=F64) * 20 - 10

    def material(seed: int, M: int = uv.shape[0]) -> Material:
        return Material(torch.full((M,), int(kind)), torch.tensor([0.8, 0.5, 0.3], dtype=F64).expand(M, 3),
                        torch.tensor([0.1, 0.2, 0.4], dtype=F64).expand(M, 3), torch.full((M,), 1.5, dtype=F64),
                        torch.full((M,), seed))

    a, again, other = (evaluate_texture(material(s), uv) for s in (3, 3, 4))
    assert torch.equal(a, again)
    assert (a - other).abs().max() > 0.05
    assert a.min() >= 0 and a.max() <= 1
    assert a.std(0).min() > 0.02  # not flat
    # detail everywhere: the albedo has a spatial gradient at (almost) every point
    uv_req = uv[:200].clone().requires_grad_()
    grad, = torch.autograd.grad(evaluate_texture(material(3, 200), uv_req).sum(), uv_req)
    assert (grad.norm(dim=-1) > 1e-3).float().mean() > 0.95


def test_texture_noise_is_continuous():
    s = torch.linspace(0, 5, 5001, dtype=F64)
    uv = torch.stack([s, 0.37 * s], -1)
    M = uv.shape[0]
    m = Material(torch.full((M,), int(TextureKind.NOISE)), torch.zeros(M, 3, dtype=F64), torch.ones(M, 3, dtype=F64),
                 torch.ones(M, dtype=F64), torch.full((M,), 9))
    albedo = evaluate_texture(m, uv)
    assert (albedo[1:] - albedo[:-1]).abs().max() < 0.02  # steps of 1 mm: no jumps at lattice cells


# ------------------------------------------------------------------------------------------ street scenes
def test_street_scene_is_deterministic_and_renders_depths_in_range():
    a, b, c = make_street_scene(1), make_street_scene(1), make_street_scene(2)
    assert 30 <= a.num_primitives <= 50
    assert torch.equal(a.boxes.center, b.boxes.center) and torch.equal(a.material.seed, b.material.seed)
    assert a.boxes.center.shape != c.boxes.center.shape or not torch.equal(a.boxes.center, c.boxes.center)
    assert len(set(a.material.kind[0].tolist())) >= 4  # varied textures
    poses = forward_camera_path(1, 2)
    assert torch.equal(poses, forward_camera_path(1, 2))
    K = PinholeCamera.intrinsics(0.58 * 104, 1.92 * 32, 51.5, 15.5)
    out = RaycastRenderer(shadows=False)(a, PinholeCamera(K, poses[:1], (32, 104)))
    assert (out.alpha == 1).all()  # the back wall closes the street
    assert 1.0 < float(out.depth.min()) and float(out.depth.max()) < 70.0


def test_camera_path_moves_forward_at_eye_height():
    poses = forward_camera_path(5, 100, speed=0.5)
    centres = torch.linalg.inv(poses)[:, :3, 3]
    steps = centres[1:] - centres[:-1]
    assert (steps[:, 2] > 0.45).all() and float(steps.norm(dim=-1).max()) < 0.51
    assert float(centres[:, 0].abs().max()) < 1.0
    assert float((centres[:, 1] - 1.5).abs().max()) < 0.05
    forward = poses[:, 2, :3]  # camera z axis in world
    assert (forward[:, 2] > 0.98).all()
    R = poses[:, :3, :3]
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(100, 3, 3), atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------ bad inputs
def test_bad_scene_and_renderer_inputs():
    with pytest.raises(ValueError, match="unit length"):
        Planes(torch.zeros(1, 1, 3), torch.tensor([[[0.0, 2.0, 0.0]]]), Material.constant(torch.ones(1, 1, 3)))
    with pytest.raises(ValueError, match="radius must be > 0"):
        Spheres(torch.zeros(1, 1, 3), torch.zeros(1, 1), Material.constant(torch.ones(1, 1, 3)))
    with pytest.raises(ValueError, match=r"Boxes.rotation must be \(B, P, 3, 3\)"):
        Boxes(torch.zeros(1, 1, 3), torch.ones(1, 1, 3), torch.eye(3)[None], Material.constant(torch.ones(1, 1, 3)))
    with pytest.raises(ValueError, match="disagree"):
        Spheres(torch.zeros(1, 2, 3), torch.ones(1, 2), Material.constant(torch.ones(1, 1, 3)))
    with pytest.raises(ValueError, match="kind values"):
        Material(torch.tensor([9]), torch.ones(1, 3), torch.ones(1, 3), torch.ones(1), torch.zeros(1).long())
    with pytest.raises(ValueError, match="at least one"):
        PrimitiveScene.create()
    with pytest.raises(ValueError, match="supersample"):
        RaycastRenderer(supersample=0)
    with pytest.raises(ValueError, match="ambient"):
        RaycastRenderer(ambient=1.5)
    with pytest.raises(ValueError, match="light_dir"):
        RaycastRenderer(light_dir=(0.0, 0.0, 0.0))
    scene = PrimitiveScene.create(planes=_ground(dtype=torch.float32))
    with pytest.raises(ValueError, match="dtype"):
        RaycastRenderer()(scene, _camera([0, 1, 0], [0, 0, 1]))
    two = scene.expand(2)
    with pytest.raises(ValueError, match="cannot broadcast"):
        RaycastRenderer()(two, PinholeCamera(torch.eye(3).expand(3, 3, 3), torch.eye(4).expand(3, 4, 4), (4, 4)))
    with pytest.raises(ValueError, match="street_half_width"):
        make_street_scene(0, street_half_width=2.0)
    with pytest.raises(ValueError, match="n_frames"):
        forward_camera_path(0, 0)
