"""Depth and trajectory metrics (tasks.depth_from_video.metrics): hand-computed 2x2 cases, scale
invariances, the constant baseline, ATE invariances, and 7-Scenes ground truth (real data)."""

import math

import numpy as np
import pytest
import torch

from runner.geometry.cameras import unproject_cam
from runner.geometry.transforms import axis_angle_to_matrix, invert_rigid, pose_vec_to_matrix
from runner.geometry.warping import warp_frame
from tasks.depth_from_video.metrics import (
    METRIC_NAMES,
    DepthCaps,
    abs_rel_by_depth,
    absolute_trajectory_error,
    align_scale,
    baseline_constant_depth,
    camera_centres,
    compute_depth_metrics,
    depth_caps,
    garg_crop_mask,
    saturated_fraction,
    umeyama_alignment,
)
from tests.conftest import shared_data

PRED = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
GT = torch.tensor([[1.0, 1.0], [2.0, 8.0]])
ALL = torch.ones(2, 2, dtype=torch.bool)


def test_depth_metrics_by_hand_on_2x2():
    m = compute_depth_metrics(PRED, GT, ALL)
    assert set(m) == set(METRIC_NAMES)
    # |p - g| / g = 0, 1, 0.5, 0.5; (p - g)^2 = 0, 1, 1, 16; max ratios = 1, 2, 1.5, 2.
    assert m["abs_rel"] == pytest.approx(0.5)
    assert m["sq_rel"] == pytest.approx((0 + 1 + 0.5 + 2) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt(18 / 4))
    assert m["rmse_log"] == pytest.approx(math.sqrt((2 * math.log(2) ** 2 + math.log(1.5) ** 2) / 4))
    assert (m["a1"], m["a2"], m["a3"]) == pytest.approx((0.25, 0.5, 0.5))  # 1.25^3 = 1.95 < 2


def test_depth_metrics_respect_the_mask_and_perfect_prediction():
    mask = torch.tensor([[True, True], [True, False]])
    m = compute_depth_metrics(PRED, GT, mask)
    assert m["abs_rel"] == pytest.approx(0.5) and m["rmse"] == pytest.approx(math.sqrt(2 / 3))
    assert m["a1"] == pytest.approx(1 / 3)
    perfect = compute_depth_metrics(GT, GT, ALL)
    assert perfect["abs_rel"] == perfect["rmse"] == perfect["rmse_log"] == 0 and perfect["a1"] == 1
    with pytest.raises(ValueError, match="mask is empty"):
        compute_depth_metrics(PRED, GT, torch.zeros(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="> 0 on the mask"):
        compute_depth_metrics(PRED - 1, GT, ALL)
    with pytest.raises(ValueError, match="bool"):
        compute_depth_metrics(PRED, GT, ALL.float())


def test_align_scale_by_hand():
    # median(gt) = (1 + 2) / 2 = 1.5 (mean of the middle values, as np.median); median(pred) = 2.5.
    assert torch.allclose(align_scale(PRED, GT, ALL), PRED * 1.5 / 2.5)
    # Least squares: sum(p g) / sum(p^2) = (1 + 2 + 6 + 32) / 30.
    assert torch.allclose(align_scale(PRED, GT, ALL, method="gt"), PRED * 41 / 30)
    assert torch.equal(align_scale(PRED, GT, ALL, method="none"), PRED)
    with pytest.raises(ValueError, match="'median', 'gt' or 'none'"):
        align_scale(PRED, GT, ALL, method="mean")


def test_median_scaling_makes_metrics_scale_invariant_per_image():
    g = torch.Generator().manual_seed(0)
    gt = 1 + 9 * torch.rand(2, 6, 8, generator=g)
    pred = gt * (1 + 0.3 * torch.randn(2, 6, 8, generator=g)).clamp(min=0.2)
    mask = torch.rand(2, 6, 8, generator=g) > 0.2
    scales = torch.tensor([7.0, 0.01]).reshape(2, 1, 1)  # a different scale for each image
    a = align_scale(pred, gt, mask)
    b = align_scale(pred * scales, gt, mask)
    assert torch.allclose(a, b, rtol=1e-5)
    for i in range(2):
        ma, mb = compute_depth_metrics(a[i], gt[i], mask[i]), compute_depth_metrics(b[i], gt[i], mask[i])
        assert ma == pytest.approx(mb, rel=1e-5)


def test_depth_caps_and_garg_crop():
    caps = depth_caps(0.1, 10)
    assert caps == DepthCaps(0.1, 10.0)
    gt = torch.tensor([0.0, 0.1, 5.0, 10.0, 12.0])
    assert caps.mask(gt).tolist() == [False, False, True, False, False]
    assert caps.clamp(torch.tensor([0.01, 3.0, 50.0])).tolist() == pytest.approx([0.1, 3.0, 10.0])
    with pytest.raises(ValueError, match="0 < min_depth < max_depth"):
        depth_caps(5, 1)
    mask = garg_crop_mask(375, 1242)  # KITTI's image size: the crop of monodepth2's evaluation
    rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
    assert (rows.min().item(), rows.max().item() + 1) == (153, 371)
    assert (cols.min().item(), cols.max().item() + 1) == (44, 1197)
    assert mask.sum() == (371 - 153) * (1197 - 44)


def test_abs_rel_by_depth_by_hand():
    # frame 1: gt 1, 4, 10 m predicted 3, 4, 11 (rel. errors 2, 0, 0.1); frame 2: gt 2 m (masked) and 50 m
    # (beyond the last edge, error 0.5): it counts in the totals but in no band.
    f1 = (torch.tensor([[3.0, 4.0, 11.0]]), torch.tensor([[1.0, 4.0, 10.0]]), torch.ones(1, 3, dtype=torch.bool))
    f2 = (torch.tensor([[9.0, 75.0]]), torch.tensor([[2.0, 50.0]]), torch.tensor([[False, True]]))
    near, far = abs_rel_by_depth([f1, f2], (0, 5, 20))
    assert (near["low"], near["high"], far["low"], far["high"]) == (0, 5, 5, 20)
    assert near["pixels"] == pytest.approx(2 / 4) and far["pixels"] == pytest.approx(1 / 4)
    assert near["abs_rel"] == pytest.approx(1.0) and far["abs_rel"] == pytest.approx(0.1)
    assert near["error_share"] == pytest.approx(2 / 2.6) and far["error_share"] == pytest.approx(0.1 / 2.6)
    empty = abs_rel_by_depth([f1], (100, 200))[0]
    assert empty["pixels"] == 0 and empty["abs_rel"] == 0
    with pytest.raises(ValueError, match="band edges must increase"):
        abs_rel_by_depth([f1], (5, 5))


def test_constant_baseline_is_the_median_prediction_and_any_constant_scores_it():
    g = torch.Generator().manual_seed(1)
    gt = 1 + 9 * torch.rand(6, 8, generator=g)
    mask = gt > 2
    base = baseline_constant_depth(gt, mask)
    for c in (0.3, 5.0, 100.0):
        scaled = align_scale(torch.full_like(gt, c), gt, mask)
        assert compute_depth_metrics(scaled, gt, mask) == pytest.approx(base)
    # A prediction with the scene's structure beats it.
    assert compute_depth_metrics(gt * 1.05, gt, mask)["abs_rel"] < base["abs_rel"]


# -------------------------------------------------------------------------------------------- trajectories
def trajectory(T=12, seed=0):
    """(T, 4, 4) cam_from_world of a camera moving along a curve while turning."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, T, dtype=torch.float64)
    centres = torch.stack([t * 2, 0.3 * torch.sin(3 * t), 0.5 * t**2], -1) + 0.01 * torch.randn(T, 3, generator=g,
                                                                                             dtype=torch.float64)
    R_wc = axis_angle_to_matrix(torch.stack([0.1 * t, 0.5 * t, -0.2 * t], -1))
    world_from_cam = torch.eye(4, dtype=torch.float64).repeat(T, 1, 1)
    world_from_cam[:, :3, :3], world_from_cam[:, :3, 3] = R_wc, centres
    return invert_rigid(world_from_cam)


def similarity_of_world(cam_from_world, scale, axis_angle, translation):
    """The same cameras after the world is mapped by x -> s R x + t (a rescaled, moved copy)."""
    S = pose_vec_to_matrix(torch.tensor([axis_angle], dtype=torch.float64),
                           torch.tensor([translation], dtype=torch.float64))[0]
    world_from_cam = invert_rigid(cam_from_world)
    moved = S @ world_from_cam
    moved[:, :3, 3] = scale * (S[:3, :3] @ world_from_cam[:, :3, 3:])[..., 0] + S[:3, 3]
    return invert_rigid(moved)


@pytest.mark.parametrize("align", ["sim3", "scale"])
@pytest.mark.parametrize("snippet_length", [None, 5])
def test_ate_zero_for_identical_and_invariant_to_a_similarity(align, snippet_length):
    gt = trajectory()
    assert absolute_trajectory_error(gt, gt, align, snippet_length) == pytest.approx(0, abs=1e-12)
    moved = similarity_of_world(gt, 3.5, [0.3, -1.0, 0.4], [5.0, -2.0, 1.0])
    assert not torch.allclose(camera_centres(moved), camera_centres(gt))
    assert absolute_trajectory_error(moved, gt, align, snippet_length) == pytest.approx(0, abs=1e-9)
    noisy = similarity_of_world(trajectory(seed=1), 0.2, [0.0, 0.5, 0.0], [1.0, 0.0, 0.0])
    e = absolute_trajectory_error(trajectory(seed=1), gt, align, snippet_length)
    assert e > 1e-3
    assert absolute_trajectory_error(noisy, gt, align, snippet_length) == pytest.approx(e, rel=1e-9)


def test_ate_by_hand_on_three_collinear_cameras():
    """Unrotated cameras at x = 0, 1, 2 (truth) and x = 0, 1, 3 (prediction)."""
    def cams(xs):
        world_from_cam = torch.eye(4, dtype=torch.float64).repeat(3, 1, 1)
        world_from_cam[:, 0, 3] = torch.tensor(xs, dtype=torch.float64)
        return invert_rigid(world_from_cam)

    pred, gt = cams([0.0, 1.0, 3.0]), cams([0.0, 1.0, 2.0])
    # scale: s = (0 + 1 + 6) / (0 + 1 + 9) = 0.7, residuals 0, -0.3, 0.1.
    assert absolute_trajectory_error(pred, gt, "scale") == pytest.approx(math.sqrt(0.1 / 3))
    # sim3: centred x -4/3, -1/3, 5/3 against -1, 0, 1: s = 1 / (14 / 9) = 9 / 14, residuals 2/14, -3/14, 1/14.
    assert absolute_trajectory_error(pred, gt, "sim3") == pytest.approx(math.sqrt(1 / 42))


def test_ate_of_one_displaced_camera_and_sim3_is_the_best_alignment():
    """Moving one of 12 cameras by 0.3 costs at most its unaligned RMSE 0.3 / sqrt(12); the similarity
    fit of the centres can only do better than the first-frame + scale fit."""
    gt = trajectory()
    bumped_wfc = invert_rigid(gt)
    bumped_wfc[5, :3, 3] += torch.tensor([0.0, 0.3, 0.0], dtype=torch.float64)
    bumped = invert_rigid(bumped_wfc)
    sim3, scale = absolute_trajectory_error(bumped, gt, "sim3"), absolute_trajectory_error(bumped, gt, "scale")
    assert 0 < sim3 <= scale
    assert sim3 < 0.3 / math.sqrt(12) * 1.01  # no worse than the unaligned error of the one bumped camera


def test_snippet_ate_matches_the_published_formula_on_two_frames():
    """SfMLearner's snippet score for L frames: sqrt(sum of squared errors) / L after the scale fit."""
    gt = trajectory(T=3)
    pred = trajectory(T=3, seed=4)
    p = camera_centres(pred @ invert_rigid(pred[:1]))[:2]
    g = camera_centres(gt @ invert_rigid(gt[:1]))[:2]
    s = (p * g).sum() / (p * p).sum()
    first = ((s * p - g) ** 2).sum().sqrt() / 2
    p2 = camera_centres(pred[1:] @ invert_rigid(pred[1:2]))
    g2 = camera_centres(gt[1:] @ invert_rigid(gt[1:2]))
    s2 = (p2 * g2).sum() / (p2 * p2).sum()
    second = ((s2 * p2 - g2) ** 2).sum().sqrt() / 2
    expected = ((first + second) / 2).item()
    assert absolute_trajectory_error(pred, gt, "scale", snippet_length=2) == pytest.approx(expected)


def test_umeyama_recovers_a_similarity():
    g = torch.Generator().manual_seed(2)
    src = torch.randn(10, 3, generator=g, dtype=torch.float64)
    R = axis_angle_to_matrix(torch.tensor([0.4, -2.0, 0.7], dtype=torch.float64))
    t = torch.tensor([1.0, 2.0, -3.0], dtype=torch.float64)
    s, R_est, t_est = umeyama_alignment(src, 2.5 * src @ R.T + t)
    assert s.item() == pytest.approx(2.5) and torch.allclose(R_est, R) and torch.allclose(t_est, t)
    # A reflection is never returned: mirrored points give a proper rotation.
    _, R_mirror, _ = umeyama_alignment(src, src * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    assert torch.det(R_mirror).item() == pytest.approx(1.0)


def test_ate_bad_inputs():
    gt = trajectory(T=6)
    with pytest.raises(ValueError, match="'sim3' or 'scale'"):
        absolute_trajectory_error(gt, gt, "se3")
    with pytest.raises(ValueError, match="one length"):
        absolute_trajectory_error(gt[:5], gt)
    with pytest.raises(ValueError, match=r"snippet_length must be in 2..6"):
        absolute_trajectory_error(gt, gt, "scale", snippet_length=7)


# -------------------------------------------------------------------------------------- 7-Scenes (real)
def load_7scenes(ids):
    """Depth [m] (T, H, W), cam_from_world (T, 4, 4) float64 and K (3, 3) of 7-Scenes redkitchen frames."""
    import imageio.v3 as iio

    root = shared_data("7scenes_redkitchen")
    depth = torch.stack([torch.from_numpy(iio.imread(root / "frames" / f"frame-{i:06d}.depth.png").astype(np.float32))
                         for i in ids]) / 1000.0
    world_from_cam = torch.stack([torch.from_numpy(np.loadtxt(root / "frames" / f"frame-{i:06d}.pose.txt"))
                                  for i in ids])
    K = torch.from_numpy(np.loadtxt(root / "camera-intrinsics.txt")).float()
    return depth, invert_rigid(world_from_cam), K


def test_7scenes_consecutive_motion_is_small_and_ate_of_ground_truth_is_zero():
    depth, cam_from_world, _ = load_7scenes([0, 1, 2])
    assert depth.shape == (3, 480, 640)
    for i in range(2):
        rel = cam_from_world[i + 1] @ invert_rigid(cam_from_world[i])  # frame i -> frame i + 1
        angle = math.degrees(math.acos(min(1.0, (rel[:3, :3].trace().item() - 1) / 2)))
        assert rel[:3, 3].norm() < 0.02 and angle < 1.0  # < 2 cm and < 1 degree at 30 Hz
    assert absolute_trajectory_error(cam_from_world, cam_from_world) == pytest.approx(0, abs=1e-12)
    assert absolute_trajectory_error(cam_from_world, cam_from_world, "scale", 2) == pytest.approx(0, abs=1e-12)


def test_7scenes_depth_warp_agrees_with_the_ground_truth_pose():
    """Warp the depth map of frame 20 into frame 0 with frame 0's depth and the true relative pose: the
    sampled source depth must equal the source-camera z of the back-projected points (same depth camera)."""
    depth, cam_from_world, K = load_7scenes([0, 20])
    step = 4  # every 4th pixel: the intrinsics of a subsampled grid are K with fx, fy, cx, cy / 4
    d = depth[:, ::step, ::step].unsqueeze(1)  # (2, 1, 120, 160)
    K_sub = (torch.diag(torch.tensor([1 / step, 1 / step, 1.0])) @ K)[None]
    src_from_dst = (cam_from_world[1] @ invert_rigid(cam_from_world[0])).float()[None]
    h, w = d.shape[-2:]
    v, u = torch.meshgrid(torch.arange(h, dtype=d.dtype), torch.arange(w, dtype=d.dtype), indexing="ij")
    pix = torch.stack([u, v], -1).reshape(1, -1, 2)
    points = unproject_cam(pix, d[:1].reshape(1, -1), K_sub).transpose(1, 2)  # (1, 3, h w) in camera 0
    z_src = (src_from_dst[:, :3, :3] @ points + src_from_dst[:, :3, 3:])[:, 2].reshape_as(d[:1])

    def residual(pose):
        warped, valid = warp_frame(d[1:], d[:1], pose, K_sub)
        ok = valid.bool() & (d[:1] > 0) & (warped > 0.5)
        return (warped - z_src)[ok].abs().median().item(), ok.float().mean().item()

    err, coverage = residual(src_from_dst)
    err_identity, _ = residual(torch.eye(4)[None])
    assert coverage > 0.6
    assert err < 0.02  # ~1 cm: the warp, the pose convention and K agree with the sensor
    assert err_identity > 3 * err


def test_saturated_fraction_counts_depths_at_either_end_of_the_range():
    depth = torch.tensor([0.1, 0.1009, 0.2, 5.0, 99.5, 100.0])  # 0.1009 and 99.5 are within 1 %
    assert saturated_fraction(depth, 0.1, 100.0) == pytest.approx(4 / 6)
    assert saturated_fraction(torch.full((8, 8), 0.1), 0.1, 100.0) == 1.0  # a collapsed prediction
    assert saturated_fraction(torch.linspace(0.5, 50.0, 100), 0.1, 100.0) == 0.0
