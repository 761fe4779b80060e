"""Inverse warping (runner.geometry.warping): an analytic textured plane, identity warps, a naive
per-pixel reference, float64 gradchecks, multi-source view synthesis, intrinsics rescaling, and
photometric descent to the plane's depth."""

import math

import pytest
import torch

from runner.geometry.cameras import PinholeCamera, project_cam, unproject_cam
from runner.geometry.transforms import axis_angle_to_matrix, pose_vec_to_matrix
from runner.geometry.warping import resize_intrinsics, warp_frame
from runner.losses.photometric import photometric_error


def intrinsics(H, W, B=1, f=None, dtype=torch.float64):
    f = f or 0.9 * W
    return PinholeCamera.intrinsics(f, 1.05 * f, (W - 1) / 2 + 0.3, (H - 1) / 2 - 0.2, batch=B, dtype=dtype)


def plane_texture(X, Y):
    """(3, ...) smooth RGB texture in [0.1, 0.9] of plane coordinates [scene units] (wavelengths 0.5-0.9)."""
    return torch.stack([
        0.5 + 0.2 * torch.sin(11 * X) * torch.cos(7 * Y) + 0.2 * torch.sin(3 * X + 5 * Y),
        0.5 + 0.4 * torch.cos(9 * X - 4 * Y),
        0.5 + 0.3 * torch.sin(8 * Y) + 0.1 * torch.cos(13 * X),
    ])


def render_plane(K, H, W, Z0, cam_from_dst):
    """Image of the textured plane z = Z0 (destination frame) seen by a camera ``cam_from_dst`` (4, 4).

    Exact ray-plane intersection per pixel centre: the ground truth is made without any warping.
    """
    v, u = torch.meshgrid(torch.arange(H, dtype=K.dtype), torch.arange(W, dtype=K.dtype), indexing="ij")
    pix = torch.stack([u, v], -1).reshape(1, -1, 2)
    dirs_cam = unproject_cam(pix, torch.ones_like(pix[..., 0]), K[:1])[0]  # (N, 3), z = 1
    R, t = cam_from_dst[:3, :3], cam_from_dst[:3, 3]
    dirs = dirs_cam @ R  # R^T d in the destination frame
    origin = -(R.T @ t)  # camera centre in the destination frame
    lam = (Z0 - origin[2]) / dirs[:, 2]
    points = origin + lam[:, None] * dirs
    return plane_texture(points[:, 0], points[:, 1]).reshape(3, H, W)


def plane_warp_errors(H, W, rotate, depth_factor=1.0):
    """Mean |warped - target| inside the valid area (3-pixel border dropped), and without warping."""
    Z0 = 2.0
    K = intrinsics(H, W)
    axis_angle = torch.tensor([[0.02, -0.03, 0.01]] if rotate else [[0.0, 0.0, 0.0]], dtype=torch.float64)
    src_from_dst = pose_vec_to_matrix(axis_angle, torch.tensor([[0.12, -0.05, 0.1]], dtype=torch.float64))
    target = render_plane(K, H, W, Z0, torch.eye(4, dtype=torch.float64))[None]
    source = render_plane(K, H, W, Z0, src_from_dst[0])[None]
    depth = torch.full((1, 1, H, W), Z0 * depth_factor, dtype=torch.float64)
    warped, valid = warp_frame(source, depth, src_from_dst, K)
    inner = valid.clone()
    inner[..., :3, :], inner[..., -3:, :], inner[..., :, :3], inner[..., :, -3:] = 0, 0, 0, 0
    inner = inner.bool()
    assert inner.sum() > 0.5 * H * W  # the motion leaves most of the view covered
    error = (warped - target).abs().mean(1, keepdim=True)[inner]
    unwarped = (source - target).abs().mean(1, keepdim=True)[inner]
    return error.mean().item(), error.max().item(), unwarped.mean().item()


@pytest.mark.parametrize("rotate", [False, True])
def test_plane_warp_reproduces_target(rotate):
    coarse, _, unwarped = plane_warp_errors(24, 32, rotate)
    fine, fine_max, _ = plane_warp_errors(48, 64, rotate)
    assert fine < 3e-3 and fine_max < 1e-2
    assert unwarped > 20 * fine  # the motion is clearly visible in the images
    # What remains is bilinear interpolation error, O(pixel^2): halving the pixel quarters it.
    assert 3 < coarse / fine < 5
    # A wrong depth does not reproduce the target.
    wrong, _, _ = plane_warp_errors(48, 64, rotate, depth_factor=1.5)
    assert wrong > 5 * fine


def test_valid_mask_matches_projection_inside_image():
    H, W = 12, 16
    K = intrinsics(H, W)
    src_from_dst = pose_vec_to_matrix(torch.zeros(1, 3, dtype=torch.float64),
                                      torch.tensor([[0.5, 0.0, 0.0]], dtype=torch.float64))
    depth = torch.full((1, 1, H, W), 4.0, dtype=torch.float64)
    _, valid = warp_frame(torch.rand(1, 1, H, W, dtype=torch.float64), depth, src_from_dst, K)
    # A shift of x by 0.5 at depth 4 moves u by fx * 0.125: the right-most columns fall outside.
    shift = K[0, 0, 0].item() * 0.125
    cols = torch.arange(W, dtype=torch.float64) + shift
    expected = ((cols >= 0) & (cols <= W - 1)).expand(H, W)
    assert torch.equal(valid[0, 0].bool(), expected)

    behind = pose_vec_to_matrix(torch.zeros(1, 3, dtype=torch.float64),
                                torch.tensor([[0.0, 0.0, -5.0]], dtype=torch.float64))
    warped, valid = warp_frame(torch.rand(1, 1, H, W, dtype=torch.float64), depth, behind, K)
    assert valid.sum() == 0 and torch.isfinite(warped).all()


def test_min_depth_ratio_bounds_the_gradient_of_points_the_camera_nearly_reaches():
    """A camera moving 1.9 forward towards a depth-2 plane: the source sees it 20x nearer, its sample
    positions (and their depth gradients) 20x magnified. The ratio floor marks those points invalid and
    passes no gradient through them; points that stay far enough are warped exactly as without it."""
    H, W = 12, 16
    K = intrinsics(H, W)
    forward = pose_vec_to_matrix(torch.zeros(1, 3, dtype=torch.float64),
                                 torch.tensor([[0.0, 0.0, -1.9]], dtype=torch.float64))
    image = torch.rand(1, 1, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    depth = torch.full((1, 1, H, W), 2.0, dtype=torch.float64)
    depth[..., : H // 2, :] = 8.0  # the upper half stays far: z_src / z_dst = 6.1 / 8
    weights = torch.linspace(0, 1, W, dtype=torch.float64)

    def warp(ratio):
        d = depth.clone().requires_grad_()
        warped, valid = warp_frame(image, d, forward, K, padding="border", min_depth_ratio=ratio)
        (warped * weights).sum().backward()
        return warped.detach(), valid, d.grad[..., H // 2 :, :].abs().max().item()

    plain, _, plain_grad = warp(0.0)
    floored, valid, floored_grad = warp(0.25)
    assert plain_grad > 1 and floored_grad == 0  # 0.1 / 2 < 0.25: the near half passes no gradient
    assert valid[..., H // 2 :, :].sum() == 0
    assert torch.equal(floored[..., : H // 2, :], plain[..., : H // 2, :])


@pytest.mark.parametrize("B", [1, 2])
def test_identity_pose_is_identity_warp_for_any_depth(B):
    H, W = 7, 9
    g = torch.Generator().manual_seed(0)
    image = torch.rand(B, 3, H, W, generator=g, dtype=torch.float64)
    depth = 0.5 + 10 * torch.rand(B, 1, H, W, generator=g, dtype=torch.float64)
    eye = torch.eye(4, dtype=torch.float64).expand(B, 4, 4)
    for padding in ("zeros", "border"):
        warped, valid = warp_frame(image, depth, eye, intrinsics(H, W, B), padding=padding)
        assert torch.allclose(warped, image, atol=1e-9)
        assert valid[..., 1:-1, 1:-1].all()  # border centres may round to just outside


def naive_warp(image, depth, src_from_dst, K):
    """Per-pixel reference: unproject, transform, project with the camera module, bilinear taps by hand."""
    B, C, H, W = image.shape
    out = torch.zeros_like(image)
    for b in range(B):
        for i in range(H):
            for j in range(W):
                pix = torch.tensor([[[float(j), float(i)]]], dtype=image.dtype)
                p = unproject_cam(pix, depth[b:b + 1, 0, i, j].reshape(1, 1), K[b:b + 1])[0, 0]
                q = src_from_dst[b, :3, :3] @ p + src_from_dst[b, :3, 3]
                u, v = project_cam(q[None, None], K[b:b + 1])[0, 0].tolist()
                j0, i0 = math.floor(u), math.floor(v)
                for di, dj in ((0, 0), (0, 1), (1, 0), (1, 1)):
                    ii, jj = i0 + di, j0 + dj
                    w = (1 - abs(u - jj)) * (1 - abs(v - ii))
                    if 0 <= ii < H and 0 <= jj < W:
                        out[b, :, i, j] += w * image[b, :, ii, jj]
    return out


def small_case(B=2, H=5, W=6, seed=3):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(B, 2, H, W, generator=g, dtype=torch.float64)
    depth = 2 + torch.rand(B, 1, H, W, generator=g, dtype=torch.float64)
    axis_angle = 0.05 * torch.randn(B, 3, generator=g, dtype=torch.float64)
    translation = 0.1 * torch.randn(B, 3, generator=g, dtype=torch.float64)
    return image, depth, axis_angle, translation, intrinsics(H, W, B)


def test_vectorised_warp_matches_naive_reference():
    image, depth, axis_angle, translation, K = small_case()
    pose = pose_vec_to_matrix(axis_angle, translation)
    warped, _ = warp_frame(image, depth, pose, K, padding="zeros")
    assert torch.allclose(warped, naive_warp(image, depth, pose, K), atol=1e-10)


def test_warp_gradcheck_float64():
    image, depth, axis_angle, translation, K = small_case(B=1)

    def f(img, d, aa, t):
        return warp_frame(img, d, pose_vec_to_matrix(aa, t), K)[0]

    inputs = [x.clone().requires_grad_() for x in (image, depth, axis_angle, translation)]
    assert torch.autograd.gradcheck(f, inputs, fast_mode=True)


def test_warp_after_inference_mode_still_differentiable():
    """The cached pixel grid made under inference mode must not break a later backward pass."""
    image, depth, axis_angle, translation, K = small_case(H=4, W=11)
    with torch.inference_mode():
        warp_frame(image, depth, pose_vec_to_matrix(axis_angle, translation), K)
    d = depth.clone().requires_grad_()
    warp_frame(image, d, pose_vec_to_matrix(axis_angle, translation), K)[0].sum().backward()
    assert torch.isfinite(d.grad).all() and d.grad.abs().sum() > 0


def test_resize_intrinsics_matches_camera_resize_and_downsampled_warp():
    K = intrinsics(48, 64, B=2)
    K2 = resize_intrinsics(K, (48, 64), (24, 32))
    cam = PinholeCamera(K, torch.eye(4, dtype=torch.float64).expand(2, 4, 4), (48, 64))
    assert torch.allclose(K2, cam.resized((24, 32)).K)
    # The centre of low-res pixel (0, 0) is the corner shared by high-res pixels (0..1, 0..1).
    p = unproject_cam(torch.tensor([[[0.5, 0.5]]], dtype=torch.float64).expand(2, 1, 2),
                      torch.ones(2, 1, dtype=torch.float64), K)
    assert torch.allclose(project_cam(p, K2), torch.zeros(2, 1, 2, dtype=torch.float64), atol=1e-12)


def test_rotation_only_warp_ignores_depth():
    """A pure rotation is a homography: the warp does not depend on depth."""
    image, depth, _, _, K = small_case(B=1)
    pose = torch.eye(4, dtype=torch.float64)[None].clone()
    pose[0, :3, :3] = axis_angle_to_matrix(torch.tensor([0.01, 0.02, -0.03], dtype=torch.float64))
    a, _ = warp_frame(image, depth, pose, K)
    b, _ = warp_frame(image, 7 * depth, pose, K)
    assert torch.allclose(a, b, atol=1e-12)


def test_bad_inputs():
    image, depth, axis_angle, translation, K = small_case(B=2)
    pose = pose_vec_to_matrix(axis_angle, translation)
    with pytest.raises(ValueError, match="padding must be 'zeros' or 'border'"):
        warp_frame(image, depth, pose, K, padding="reflection")
    with pytest.raises(ValueError, match=r"depth_dst must be \(B, 1, H, W\)"):
        warp_frame(image, depth[..., :4], pose, K)
    with pytest.raises(ValueError, match=r"src_from_dst must be \(B, 4, 4\)"):
        warp_frame(image, depth, pose[:1], K)
    with pytest.raises(ValueError, match=r"K must be \(B, 3, 3\)"):
        warp_frame(image, depth, pose, K[:1])


def test_photometric_descent_recovers_the_plane_depth():
    """With the true pose, minimising the SSIM + L1 error of the warped source over one log-depth moves a
    wrong initial depth (x1.6) to the plane's depth: the warp's depth gradient points the right way."""
    H, W, Z0 = 24, 32, 2.0
    K = intrinsics(H, W)
    src_from_dst = pose_vec_to_matrix(torch.tensor([[0.01, -0.02, 0.0]], dtype=torch.float64),
                                      torch.tensor([[0.12, -0.05, 0.05]], dtype=torch.float64))
    target = render_plane(K, H, W, Z0, torch.eye(4, dtype=torch.float64))[None]
    source = render_plane(K, H, W, Z0, src_from_dst[0])[None]
    # Sign descent on one log-depth, halving the step when the gradient's sign flips (torch.optim would
    # import torch._dynamo, seconds on a shared CPU, for one scalar).
    log_depth, step, last_sign = torch.tensor(math.log(1.6 * Z0), dtype=torch.float64), 0.1, 0.0
    for _ in range(30):
        log_depth.requires_grad_()
        warped, valid = warp_frame(source, log_depth.exp().expand(1, 1, H, W), src_from_dst, K, padding="border")
        loss = (photometric_error(warped, target) * valid).sum() / valid.sum()
        sign = torch.autograd.grad(loss, log_depth)[0].sign().item()
        step = step / 2 if sign * last_sign < 0 else step
        log_depth, last_sign = log_depth.detach() - step * sign, sign
    assert log_depth.exp().item() == pytest.approx(Z0, rel=0.01)
