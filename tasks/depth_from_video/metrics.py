"""Depth and ego-motion metrics.

Depth follows the protocol of Eigen et al. ("Depth Map Prediction from a Single Image using a
Multi-Scale Deep Network", NeurIPS 2014) as monodepth2 (Godard et al., ICCV 2019) evaluates it, one
image at a time:

1. keep ground-truth pixels inside the depth caps (:class:`DepthCaps`), optionally inside the KITTI
   crop of Garg et al. (:func:`garg_crop_mask`);
2. scale the monocular prediction per image (:func:`align_scale`: median scaling by default);
3. clamp the scaled prediction to the caps and compute the seven numbers of
   :func:`compute_depth_metrics`; the dataset score is their mean over images.

Poses are scored by the absolute trajectory error (ATE) of camera centres after a similarity
(Umeyama, IEEE PAMI 1991) or scale-only alignment, and by the 5-frame snippet ATE of SfMLearner
(Zhou et al., CVPR 2017), which monodepth2 also reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from runner.geometry.transforms import invert_rigid

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def _check_same_shape(pred: Tensor, gt: Tensor, mask: Tensor) -> None:
    if pred.shape != gt.shape or mask.shape != gt.shape:
        raise ValueError(f"pred, gt and mask must have one shape, got {tuple(pred.shape)}, {tuple(gt.shape)}, "
                         f"{tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")


def compute_depth_metrics(pred: Tensor, gt: Tensor, valid_mask: Tensor) -> dict[str, float]:
    """The Eigen et al. error and accuracy measures over the pixels of ``valid_mask``.

    With p the prediction and g the ground truth at N valid pixels:
    ``abs_rel = mean(|p - g| / g)``, ``sq_rel = mean((p - g)^2 / g)``, ``rmse = sqrt(mean((p - g)^2))``,
    ``rmse_log = sqrt(mean((ln p - ln g)^2))`` and ``a_k = mean(max(p / g, g / p) < 1.25^k)``.

    Args:
        pred: (..., H, W) predicted depth [scene units], > 0 on the mask (already scaled and clamped).
        gt: same shape, ground-truth depth [scene units], > 0 on the mask.
        valid_mask: same shape, bool; the pixels to evaluate. All pixels are pooled, so call this once per
            image and average the dicts for the Eigen protocol.
    Returns:
        ``{"abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"}`` as floats (computed in float64).
    """
    _check_same_shape(pred, gt, valid_mask)
    p, g = pred[valid_mask].double(), gt[valid_mask].double()
    if p.numel() == 0:
        raise ValueError("no valid pixels to evaluate: the mask is empty")
    if (p <= 0).any() or (g <= 0).any():
        raise ValueError("depths must be > 0 on the mask (clamp the prediction to the depth caps first)")
    ratio = torch.maximum(g / p, p / g)
    return {
        "abs_rel": ((p - g).abs() / g).mean().item(),
        "sq_rel": ((p - g) ** 2 / g).mean().item(),
        "rmse": ((p - g) ** 2).mean().sqrt().item(),
        "rmse_log": ((p.log() - g.log()) ** 2).mean().sqrt().item(),
        "a1": (ratio < 1.25).double().mean().item(),
        "a2": (ratio < 1.25**2).double().mean().item(),
        "a3": (ratio < 1.25**3).double().mean().item(),
    }


def _median(x: Tensor) -> Tensor:
    """Median of a 1-D tensor, the mean of the two middle values for an even count (as ``np.median``,
    which the published evaluations use; ``torch.median`` returns the lower one)."""
    v = x.sort().values
    n = v.numel()
    return (v[(n - 1) // 2] + v[n // 2]) / 2


def align_scale(pred: Tensor, gt: Tensor, mask: Tensor,
                method: Literal["median", "none", "gt"] = "median") -> Tensor:
    """Scale a monocular depth prediction per image, which fixes the scale it cannot observe.

    Args:
        pred: (H, W) or (B, H, W) predicted depth, > 0.
        gt: same shape, ground-truth depth.
        mask: same shape, bool; the valid pixels from which the scale is estimated.
        method: ``"median"``: ``median(gt) / median(pred)`` on the mask (Zhou et al. 2017; monodepth2);
            ``"gt"``: the least-squares scale ``sum(p g) / sum(p^2)`` on the mask, an oracle that uses
            more of the ground truth than the median; ``"none"``: unchanged (metric-scale predictions).
    Returns:
        The scaled prediction, same shape (each image of a batch with its own scale).
    """
    if method not in ("median", "none", "gt"):
        raise ValueError(f"scaling method must be 'median', 'gt' or 'none', got {method!r}")
    _check_same_shape(pred, gt, mask)
    if pred.dim() not in (2, 3):
        raise ValueError(f"expected (H, W) or (B, H, W) depth maps, got {tuple(pred.shape)}")
    if method == "none":
        return pred
    if pred.dim() == 3:
        return torch.stack([align_scale(p, g, m, method) for p, g, m in zip(pred, gt, mask)])
    if not mask.any():
        raise ValueError("cannot estimate a scale: the mask is empty")
    p, g = pred[mask], gt[mask]
    if method == "median":
        return pred * (_median(g) / _median(p))
    return pred * ((p * g).sum() / (p * p).sum())


@dataclass(frozen=True)
class DepthCaps:
    """The depth range an evaluation trusts [scene units] (KITTI, Eigen split: 1e-3 to 80 m).

    Ground truth outside (min_depth, max_depth) is ignored; scaled predictions are clamped into
    [min_depth, max_depth] before scoring, as monodepth2 does.
    """

    min_depth: float
    max_depth: float

    def __post_init__(self):
        if not 0 < self.min_depth < self.max_depth:
            raise ValueError(f"depth caps need 0 < min_depth < max_depth, got {self.min_depth}, {self.max_depth}")

    def mask(self, gt: Tensor) -> Tensor:
        """Bool mask of ground-truth pixels strictly inside the caps (0 = missing depth is excluded)."""
        return (gt > self.min_depth) & (gt < self.max_depth)

    def clamp(self, pred: Tensor) -> Tensor:
        """The prediction clamped into [min_depth, max_depth]."""
        return pred.clamp(self.min_depth, self.max_depth)


def depth_caps(min_depth: float, max_depth: float) -> DepthCaps:
    """The :class:`DepthCaps` for ``(min_depth, max_depth)`` [scene units]; ValueError if not 0 < min < max."""
    return DepthCaps(float(min_depth), float(max_depth))


# The crop of Garg et al. (ECCV 2016) on KITTI's 375x1242 images, as fractions of the height and width.
_GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)


def garg_crop_mask(H: int, W: int, device: torch.device | None = None) -> Tensor:
    """(H, W) bool mask of the evaluation crop of Garg et al. (ECCV 2016) used on KITTI's Eigen split.

    Rows ``[0.408 H, 0.992 H)`` and columns ``[0.036 W, 0.964 W)``: the lower part of the image where the
    LiDAR has returns, without the left and right margins.
    """
    if H <= 0 or W <= 0:
        raise ValueError(f"image size must be positive, got {H}x{W}")
    top, bottom, left, right = _GARG_CROP
    mask = torch.zeros(H, W, dtype=torch.bool, device=device)
    mask[int(top * H):int(bottom * H), int(left * W):int(right * W)] = True
    return mask


def baseline_constant_depth(gt: Tensor, mask: Tensor) -> dict[str, float]:
    """The metrics of a prediction that knows nothing about the image: one constant depth per image.

    Under median scaling every constant c becomes ``c * median(gt) / c = median(gt)``, so all constant
    predictions score the same: this returns the metrics of the constant ``median(gt)`` over the mask.
    A trained network must beat it to have learned anything about the scene's structure.

    Args:
        gt: (H, W) ground-truth depth [scene units].
        mask: (H, W) bool, the evaluated pixels (caps and crop already applied).
    Returns:
        The dict of :func:`compute_depth_metrics`.
    """
    _check_same_shape(gt, gt, mask)
    if not mask.any():
        raise ValueError("no valid pixels to evaluate: the mask is empty")
    return compute_depth_metrics(torch.full_like(gt, _median(gt[mask]).item()), gt, mask)


def abs_rel_by_depth(frames, edges: tuple[float, ...]) -> list[dict[str, float]]:
    """Where the abs_rel of a data set comes from: its pixels grouped by ground-truth depth.

    abs_rel averages ``|pred - gt| / gt``, which is unbounded above: a few near pixels predicted several
    times too far can outweigh the rest of the image. This splits the pixels of all frames into bands
    ``[edges[i], edges[i + 1])``.

    Args:
        frames: iterable of (scaled prediction, gt, mask), each (H, W), as the evaluation scores them.
        edges: increasing band edges [scene units].
    Returns:
        One dict per band: ``low``, ``high``, ``pixels`` (share of all valid pixels), ``abs_rel`` (mean
        over the band's pixels, 0 for an empty band) and ``error_share`` (share of the summed ``|pred -
        gt| / gt`` of all valid pixels).
    """
    edges = tuple(float(e) for e in edges)
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"band edges must increase and hold at least two values, got {edges}")
    n = len(edges) - 1
    counts, errors = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    total_pixels, total_error = 0.0, 0.0
    for pred, gt, mask in frames:
        _check_same_shape(pred, gt, mask)
        g, rel = gt[mask], ((pred[mask] - gt[mask]).abs() / gt[mask]).double()
        band = torch.bucketize(g, torch.tensor(edges, dtype=g.dtype, device=g.device), right=True) - 1
        inside = (band >= 0) & (band < n)
        counts += torch.bincount(band[inside], minlength=n).double().cpu()
        errors += torch.bincount(band[inside], weights=rel[inside], minlength=n).cpu()
        total_pixels, total_error = total_pixels + g.numel(), total_error + float(rel.sum())
    total_pixels, total_error = max(total_pixels, 1.0), max(total_error, 1e-12)
    return [{"low": edges[i], "high": edges[i + 1], "pixels": float(counts[i] / total_pixels),
             "abs_rel": float(errors[i] / counts[i]) if counts[i] else 0.0,
             "error_share": float(errors[i] / total_error)} for i in range(n)]


def saturated_fraction(depth: Tensor, min_depth: float, max_depth: float, tol: float = 0.01) -> float:
    """Fraction of predicted depths at an end of the network's range: within ``tol`` (relative) of
    ``min_depth`` or ``max_depth``, where the disparity sigmoid is flat and passes almost no gradient.

    A run whose predictions all sit there has collapsed to a constant depth (the photometric loss can
    still fall, through the pose), and median scaling then scores it exactly as ``baseline_abs_rel``.

    Args:
        depth: predicted depth of any shape [network units], in [min_depth, max_depth].
        min_depth, max_depth: the network's depth range.
        tol: relative distance from an end that counts as saturated.
    """
    low, high = depth <= min_depth * (1 + tol), depth >= max_depth * (1 - tol)
    return float((low | high).float().mean())


def umeyama_alignment(src: Tensor, dst: Tensor, with_scale: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """The similarity (s, R, t) minimising ``sum_i || dst_i - (s R src_i + t) ||^2`` (Umeyama, PAMI 1991).

    Args:
        src, dst: (N, 3) corresponding points, N >= 3 and not all collinear for a unique rotation.
        with_scale: estimate s; otherwise s = 1 (a rigid alignment).
    Returns:
        s (), R (3, 3) with det +1, t (3,).
    """
    if src.shape != dst.shape or src.dim() != 2 or src.shape[1] != 3:
        raise ValueError(f"need two (N, 3) point sets of one shape, got {tuple(src.shape)} and {tuple(dst.shape)}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, S, Vh = torch.linalg.svd(cov)
    D = torch.ones(3, dtype=src.dtype, device=src.device)
    if torch.det(U) * torch.det(Vh) < 0:
        D[2] = -1
    R = U @ torch.diag(D) @ Vh
    var = (xs**2).sum() / len(src)
    if not with_scale:
        s = torch.ones((), dtype=src.dtype, device=src.device)
    else:  # all source points equal: the best similarity collapses them onto the mean of dst
        s = (S * D).sum() / var if var > 0 else torch.zeros((), dtype=src.dtype, device=src.device)
    t = mu_d - s * R @ mu_s
    return s, R, t


def camera_centres(cam_from_world: Tensor) -> Tensor:
    """(T, 4, 4) rigid ``cam_from_world`` -> (T, 3) camera centres ``-R^T t`` in world coordinates."""
    R, t = cam_from_world[:, :3, :3], cam_from_world[:, :3, 3:]
    return -(R.transpose(1, 2) @ t)[..., 0]


def _relative_to_first(cam_from_world: Tensor) -> Tensor:
    """Re-express a trajectory in the frame of its first camera (which becomes the identity)."""
    return cam_from_world @ invert_rigid(cam_from_world[:1])


def absolute_trajectory_error(pred_cam_from_world: Tensor, gt_cam_from_world: Tensor,
                              align: Literal["sim3", "scale"] = "sim3", snippet_length: int | None = None) -> float:
    """Absolute trajectory error of camera centres [ground-truth units].

    Args:
        pred_cam_from_world: (T, 4, 4) predicted poses, world -> camera (e.g. chained PoseNet motions).
        gt_cam_from_world: (T, 4, 4) ground-truth poses, same convention and frames.
        align: how the scale-free monocular trajectory is put onto the ground truth before comparing:
            ``"sim3"``: the similarity of camera centres of Umeyama (1991), as in TUM RGB-D's ATE;
            ``"scale"``: both trajectories re-expressed relative to their first camera, then the
            least-squares scale of the centres (SfMLearner; rotation and origin fixed by frame 0).
        snippet_length: None for the whole trajectory, RMSE ``sqrt(mean ||c_pred - c_gt||^2)``. An
            integer L gives SfMLearner's snippet ATE (Zhou et al. 2017, as reported by monodepth2 with
            L = 5): every window of L consecutive frames is aligned on its own and scored as in the
            published code, ``sqrt(sum ||c_pred - c_gt||^2) / L`` (a root-sum divided by L, not an RMSE),
            and the mean over windows is returned.
    Returns:
        The error as a float (float64 computation).
    """
    if align not in ("sim3", "scale"):
        raise ValueError(f"align must be 'sim3' or 'scale', got {align!r}")
    if pred_cam_from_world.shape != gt_cam_from_world.shape or pred_cam_from_world.shape[1:] != (4, 4):
        raise ValueError(f"need two (T, 4, 4) trajectories of one length, got {tuple(pred_cam_from_world.shape)} "
                         f"and {tuple(gt_cam_from_world.shape)}")
    pred, gt = pred_cam_from_world.double(), gt_cam_from_world.double()
    T = len(gt)
    if snippet_length is None:
        if T < 3 and align == "sim3":
            raise ValueError(f"a similarity alignment needs at least 3 poses, got {T}")
        return _aligned_errors(pred, gt, align).pow(2).mean().sqrt().item()
    if not 2 <= snippet_length <= T:
        raise ValueError(f"snippet_length must be in 2..{T} (the trajectory length), got {snippet_length}")
    if snippet_length < 3 and align == "sim3":
        raise ValueError(f"a similarity alignment needs snippets of at least 3 poses, got {snippet_length}")
    L = snippet_length
    errors = [_aligned_errors(pred[i:i + L], gt[i:i + L], align).pow(2).sum().sqrt() / L for i in range(T - L + 1)]
    return torch.stack(errors).mean().item()


def _aligned_errors(pred: Tensor, gt: Tensor, align: str) -> Tensor:
    """(T,) distances between the aligned predicted centres and the ground-truth centres."""
    if align == "scale":
        p, g = camera_centres(_relative_to_first(pred)), camera_centres(_relative_to_first(gt))
        denom = (p * p).sum()
        scale = (p * g).sum() / denom if denom > 0 else torch.ones((), dtype=p.dtype)
        return (scale * p - g).norm(dim=-1)
    p, g = camera_centres(pred), camera_centres(gt)
    s, R, t = umeyama_alignment(p, g)
    return (s * p @ R.T + t - g).norm(dim=-1)
