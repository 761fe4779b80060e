"""View synthesis by inverse warping (Zhou et al., "Unsupervised Learning of Depth and Ego-Motion from
Video", CVPR 2017).

Every destination pixel is back-projected with its depth, moved into the source camera by a rigid
transform, projected with the intrinsics and the source image is sampled there bilinearly. The result
is differentiable with respect to the source image, the destination depth, the pose and K.

Images are NCHW here (networks and losses). Pixel (row i, col j) has its centre at (u, v) = (j, i), the
convention of :mod:`runner.geometry.cameras`; ``grid_sample(align_corners=True)`` puts the normalised
coordinates -1 and +1 on the centres of the first and last pixels, which is the same convention.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from runner.errors import NonFiniteError

Padding = Literal["zeros", "border"]


@lru_cache(maxsize=32)
def _pixel_grid(H: int, W: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(3, H*W) homogeneous pixel centres (u, v, 1), row-major; cached per size, device and dtype.

    Built outside inference mode so that a grid first made under ``torch.inference_mode`` can still be
    saved for backward by a later training step.
    """
    with torch.inference_mode(False):
        v, u = torch.meshgrid(torch.arange(H, device=device, dtype=dtype),
                              torch.arange(W, device=device, dtype=dtype), indexing="ij")
        return torch.stack([u.reshape(-1), v.reshape(-1), torch.ones_like(u).reshape(-1)])


def _check_K(K: Tensor, B: int) -> None:
    if K.shape != (B, 3, 3):
        raise ValueError(f"K must be (B, 3, 3) = {(B, 3, 3)}, got {tuple(K.shape)}")


def warp_frame(image_src: Tensor, depth_dst: Tensor, src_from_dst: Tensor, K: Tensor,
               padding: Padding = "zeros", eps: float = 1e-3, min_depth_ratio: float = 0.0) -> tuple[Tensor, Tensor]:
    """Inverse-warp ``image_src`` into the destination view (Zhou et al., SfMLearner, CVPR 2017).

    A destination pixel p with depth d lands in the source at ``K (R d K^-1 p + t)``, computed as one
    (3, 3) matrix ``K R K^-1`` and one offset ``K t`` per batch element.

    Args:
        image_src: (B, C, H, W) source image.
        depth_dst: (B, 1, H, W) destination depth [scene units], > 0.
        src_from_dst: (B, 4, 4) rigid transform, destination camera -> source camera.
        K: (B, 3, 3) pinhole intrinsics in pixels, shared by both views.
        padding: value of samples outside the source image: ``"zeros"`` or ``"border"`` (edge pixels).
        eps: minimum source-camera depth [scene units]; points nearer (or behind) are invalid: projected as
            if at ``eps`` to stay finite, and passing no gradient to depth or pose.
        min_depth_ratio: minimum source-camera depth as a fraction of the point's destination depth; points
            nearer are invalid in the same way. A point that comes r times nearer is magnified 1/r times in
            the source image, and so is the gradient of its sample position: with r small, a depth predicted
            just beyond a forward camera's translation sends a gradient spike through the networks. Static
            scenes seen by a camera that moves less than its distance to them keep z_src / z_dst well above
            it (0 = off, only ``eps``).
    Returns:
        warped (B, C, H, W) and valid (B, 1, H, W) in {0, 1} (same dtype as the image, no gradient): the
        sample point lies within the source pixel centres, ``0 <= u <= W - 1`` and ``0 <= v <= H - 1``,
        so every bilinear tap is a real pixel, and in front of the source camera.
    """
    if padding not in ("zeros", "border"):
        raise ValueError(f"padding must be 'zeros' or 'border', got {padding!r}")
    if image_src.dim() != 4:
        raise ValueError(f"image_src must be (B, C, H, W), got {tuple(image_src.shape)}")
    B, C, H, W = image_src.shape
    if depth_dst.shape != (B, 1, H, W):
        raise ValueError(f"depth_dst must be (B, 1, H, W) = {(B, 1, H, W)} like image_src, "
                         f"got {tuple(depth_dst.shape)}")
    if src_from_dst.shape != (B, 4, 4):
        raise ValueError(f"src_from_dst must be (B, 4, 4) = {(B, 4, 4)}, got {tuple(src_from_dst.shape)}")
    _check_K(K, B)
    pix = _pixel_grid(H, W, depth_dst.device, depth_dst.dtype)  # (3, HW)
    KR = K @ src_from_dst[:, :3, :3]
    P = KR @ torch.linalg.inv(K)  # (B, 3, 3)
    Kt = K @ src_from_dst[:, :3, 3:]  # (B, 3, 1)
    proj = (P @ pix) * depth_dst.reshape(B, 1, H * W) + Kt  # (B, 3, HW) = z_src * (u, v, 1)
    z = proj[:, 2]
    z_min = (min_depth_ratio * depth_dst.detach().reshape(B, H * W)).clamp(min=eps) if min_depth_ratio > 0 else eps
    near = z <= z_min  # invalid: projected as if at z_min, and without gradient
    uv = proj[:, :2] / torch.where(near, z_min, z).unsqueeze(1)
    uv = torch.where(near.unsqueeze(1), uv.detach(), uv)
    # Pixel centres 0 .. W-1 map to -1 .. 1 (align_corners=True).
    grid_x = uv[:, 0] * (2.0 / max(W - 1, 1)) - 1.0
    grid_y = uv[:, 1] * (2.0 / max(H - 1, 1)) - 1.0
    grid = torch.stack([grid_x, grid_y], -1).reshape(B, H, W, 2)
    check_finite_grid(grid)
    warped = F.grid_sample(image_src, grid, mode="bilinear", padding_mode=padding, align_corners=True)
    with torch.no_grad():
        valid = (grid_x.abs() <= 1) & (grid_y.abs() <= 1) & ~near
    return warped, valid.reshape(B, 1, H, W).to(image_src.dtype)


def check_finite_grid(grid: Tensor) -> None:
    """Raise :class:`NonFiniteError` when a sampling grid holds NaN or Inf.

    ``grid_sample`` on the CPU returns a finite image for a non-finite grid (with ``padding="border"``)
    and then crashes the process with a segmentation fault in its backward pass, past every check of the
    loss: a diverged pose, depth or focal length must stop here, where the loop can still report it.

    Args:
        grid: (B, H, W, 2) normalised sampling coordinates.
    """
    if not torch.isfinite(grid.detach()).all():
        raise NonFiniteError(
            "non-finite sampling grid in warp_frame: a depth, pose or intrinsics value became NaN/Inf"
        )


def resize_intrinsics(K: Tensor, image_size: tuple[int, int], new_size: tuple[int, int]) -> Tensor:
    """Intrinsics of the same camera for the image resized from ``image_size`` to ``new_size`` (H, W).

    Pixel centres are preserved (``u' = s u + (s - 1) / 2``), as :meth:`PinholeCamera.resized` does,
    which matches ``F.interpolate(mode="area")`` and ``align_corners=False`` resampling: the intrinsics
    of monodepth2's scale s are ``resize_intrinsics(K, (H, W), (H // 2**s, W // 2**s))``.

    Args:
        K: (B, 3, 3) intrinsics in pixels of ``image_size``.
        image_size: (H, W) the image K refers to.
        new_size: (H', W') the resized image.
    Returns:
        (B, 3, 3) intrinsics in pixels of ``new_size``.
    """
    (H0, W0), (H1, W1) = image_size, new_size
    if min(H0, W0, H1, W1) <= 0:
        raise ValueError(f"image sizes must be positive, got {image_size} -> {new_size}")
    sx, sy = W1 / W0, H1 / H0
    S = torch.tensor([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]],
                     dtype=K.dtype, device=K.device)
    return S @ K
