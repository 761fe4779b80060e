"""Differentiable splatting of particles and point clouds as isotropic screen-space Gaussians.

A point of radius ``r`` at camera depth ``z`` becomes a 2D Gaussian centred on its projection with
standard deviation ``sigma = sqrt((sigma_scale r f / z)^2 + blur_px^2)`` pixels (``f = sqrt(fx fy)``):
the projected radius of the sphere, scaled, plus a small low-pass filter so that sub-pixel points do
not alias (the EWA idea of Zwicker et al., "EWA splatting", IEEE TVCG 2002). Its opacity at a pixel is
``a = opacity * g(d / sigma)`` with ``g`` a Gaussian truncated at ``cutoff`` standard deviations and
shifted so that it reaches 0 there continuously. Points are sorted by depth and alpha-composited front
to back, as in 3D Gaussian splatting (Kerbl et al., SIGGRAPH 2023):

    T_i = prod_{j < i} (1 - a_j),   rgb = sum_i T_i a_i c_i + T_N background,   alpha = 1 - T_N,
    depth = sum_i T_i a_i z_i / alpha   (the expected depth of the visible mass; 0 where alpha < 1e-6).

Everything is differentiable w.r.t. positions, radii, colours, opacities and the camera (K,
``cam_from_world``) except the depth order, which is a discrete sort (a pair of points swapping order
changes the image continuously only when they do not overlap). Points with ``z <= near`` are dropped.

The image is cut into ``tile_size`` x ``tile_size`` tiles; each tile composites only the points whose
``cutoff``-sigma disc touches it (in depth order, padded to the busiest tile), and tiles are processed
in chunks so that one chunk holds at most ``max_chunk_elements`` pixel x point pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from runner.geometry.cameras import PinholeCamera
from runner.render.base import POINTS, Rendered

_DEPTH_ALPHA_EPS = 1e-6  # below this coverage a pixel's depth is reported as 0


@dataclass(frozen=True)
class PointCloud:
    """A batch of B clouds of N coloured spherical points.

    Attributes:
        positions: (B, N, 3) centres [scene units], world frame.
        radii: (B, N) or (B, N, 1) radii [scene units], > 0.
        colors: (B, N, 3) linear RGB in [0, 1].
        opacities: optional (B, N) peak opacities in [0, 1]; None means 1.
    """

    positions: Tensor
    radii: Tensor
    colors: Tensor
    opacities: Tensor | None = None

    def __post_init__(self):
        if self.positions.dim() != 3 or self.positions.shape[-1] != 3:
            raise ValueError(f"positions must be (B, N, 3), got {tuple(self.positions.shape)}")
        B, N, _ = self.positions.shape
        if tuple(self.radii.shape) not in ((B, N), (B, N, 1)):
            raise ValueError(f"radii must be (B, N) or (B, N, 1) = ({B}, {N}[, 1]), got {tuple(self.radii.shape)}")
        if tuple(self.colors.shape) != (B, N, 3):
            raise ValueError(f"colors must be (B, N, 3) = ({B}, {N}, 3), got {tuple(self.colors.shape)}")
        if self.opacities is not None and tuple(self.opacities.shape) != (B, N):
            raise ValueError(f"opacities must be (B, N) = ({B}, {N}), got {tuple(self.opacities.shape)}")
        if self.radii.numel() and not bool((self.radii > 0).all()):
            raise ValueError("radii must be > 0")

    @property
    def radius(self) -> Tensor:
        """(B, N) radii."""
        return self.radii.reshape(self.positions.shape[:2])

    @property
    def opacity(self) -> Tensor:
        """(B, N) peak opacities (1 if none were given)."""
        if self.opacities is None:
            return torch.ones_like(self.positions[..., 0])
        return self.opacities


class SplatRenderer:
    """Front-to-back alpha compositing of screen-space Gaussians (see the module docstring).

    Args:
        sigma_scale: Gaussian std as a fraction of the projected point radius (0.5: the 2-sigma contour
            is the projected sphere's outline).
        background: RGB behind the points, in [0, 1].
        blur_px: screen-space low-pass filter std [pixels] added in quadrature, >= 0.
        cutoff: Gaussians are truncated at this many standard deviations, > 0.
        near: points with camera depth <= near [scene units] are not drawn, > 0.
        max_alpha: per-point opacity is clamped to this, in (0, 1), so that transmittance stays > 0.
        tile_size: tile side [pixels].
        max_chunk_elements: pixel x point pairs evaluated at once (bounds memory).
    """

    draws = frozenset({POINTS})

    def __init__(self, sigma_scale: float = 0.5, background: Sequence[float] = (0.0, 0.0, 0.0),
                 blur_px: float = 0.3, cutoff: float = 3.0, near: float = 1e-2, max_alpha: float = 0.99,
                 tile_size: int = 16, max_chunk_elements: int = 2**22):
        if sigma_scale <= 0:
            raise ValueError(f"sigma_scale must be > 0, got {sigma_scale}")
        if len(background) != 3 or not all(0.0 <= c <= 1.0 for c in background):
            raise ValueError(f"background must be 3 values in [0, 1], got {list(background)}")
        if blur_px < 0:
            raise ValueError(f"blur_px must be >= 0, got {blur_px}")
        if cutoff <= 0 or near <= 0:
            raise ValueError(f"cutoff and near must be > 0, got {cutoff}, {near}")
        if not 0.0 < max_alpha < 1.0:
            raise ValueError(f"max_alpha must be in (0, 1), got {max_alpha}")
        if tile_size < 1 or max_chunk_elements < 1:
            raise ValueError(f"tile_size and max_chunk_elements must be >= 1, got {tile_size}, {max_chunk_elements}")
        self.sigma_scale = float(sigma_scale)
        self.background = tuple(float(c) for c in background)
        self.blur_px = float(blur_px)
        self.cutoff = float(cutoff)
        self.near = float(near)
        self.max_alpha = float(max_alpha)
        self.tile_size = int(tile_size)
        self.max_chunk_elements = int(max_chunk_elements)

    def __call__(self, points: PointCloud, cameras: PinholeCamera) -> Rendered:
        """Render ``points`` (batch B, or 1 broadcast to all cameras) seen by ``cameras`` (batch B).

        Returns:
            rgb (B, H, W, 3), alpha (B, H, W) = 1 - final transmittance, depth (B, H, W) expected camera
            z of the composited points [scene units] (0 where alpha < 1e-6).
        """
        B = cameras.batch_size
        if points.positions.shape[0] not in (1, B):
            raise ValueError(f"{points.positions.shape[0]} point clouds for {B} cameras (need 1 or {B})")
        if points.positions.dtype != cameras.K.dtype:
            raise ValueError(f"points dtype {points.positions.dtype} differs from camera dtype {cameras.K.dtype}")
        N = points.positions.shape[1]
        if N == 0:
            H, W = cameras.image_size
            zeros = cameras.K.new_zeros(B, H, W)
            rgb = torch.tensor(self.background, dtype=zeros.dtype, device=zeros.device).expand(B, H, W, 3)
            return Rendered(rgb.clone(), zeros, zeros.clone())
        positions = points.positions.expand(B, N, 3)
        pix, z = cameras.project(positions)
        focal = torch.sqrt(cameras.K[:, 0, 0] * cameras.K[:, 1, 1])[:, None]
        sigma_proj = self.sigma_scale * points.radius.expand(B, N) * focal / z.clamp(min=self.near)
        sigma = torch.sqrt(sigma_proj**2 + self.blur_px**2)
        # Depth order (a discrete choice, no gradient): every per-point quantity is sorted front to back.
        order = torch.argsort(z.detach(), dim=-1)
        attrs = torch.cat([pix, sigma[..., None], z[..., None], points.colors.expand(B, N, 3),
                           points.opacity.expand(B, N)[..., None]], -1)
        attrs = attrs.gather(1, order[..., None].expand(-1, -1, attrs.shape[-1]))  # (B, N, 8)
        visible = (z.gather(1, order) > self.near).detach()
        return self._composite(attrs, visible, cameras.image_size)

    def _composite(self, attrs: Tensor, visible: Tensor, image_size: tuple[int, int]) -> Rendered:
        """Tile-wise compositing of depth-sorted attrs (B, N, 8) = (u, v, sigma, z, r, g, b, opacity)."""
        B, N, _ = attrs.shape
        H, W = image_size
        ts = self.tile_size
        Th, Tw = math.ceil(H / ts), math.ceil(W / ts)
        dtype, device = attrs.dtype, attrs.device

        # Which points touch which tile: their cutoff-sigma box overlaps the tile's pixel centres.
        with torch.no_grad():
            reach = self.cutoff * attrs[..., 2]
            u, v = attrs[..., 0], attrs[..., 1]
            lo = torch.arange(Tw, device=device, dtype=dtype) * ts
            lo_v = torch.arange(Th, device=device, dtype=dtype) * ts
            hit_u = (u[:, None] + reach[:, None] >= lo[None, :, None]) & \
                    (u[:, None] - reach[:, None] <= lo[None, :, None] + ts - 1)  # (B, Tw, N)
            hit_v = (v[:, None] + reach[:, None] >= lo_v[None, :, None]) & \
                    (v[:, None] - reach[:, None] <= lo_v[None, :, None] + ts - 1)  # (B, Th, N)
            touches = (hit_v[:, :, None] & hit_u[:, None] & visible[:, None, None]).reshape(B, Th * Tw, N)
            counts = touches.sum(-1)
            K = max(int(counts.max()), 1)
            # Stable sort puts each tile's points first, still in depth order; pad with invalid slots.
            slots = torch.sort((~touches).to(torch.uint8), dim=-1, stable=True).indices[..., :K]
            valid = torch.arange(K, device=device) < counts[..., None]  # (B, T, K)

        jj, ii = torch.meshgrid(torch.arange(ts, device=device, dtype=dtype),
                                torch.arange(ts, device=device, dtype=dtype), indexing="xy")
        tile_v, tile_u = torch.meshgrid(lo_v, lo, indexing="ij")
        pix_u = (tile_u.reshape(-1, 1) + jj.reshape(1, -1))  # (T, ts*ts)
        pix_v = (tile_v.reshape(-1, 1) + ii.reshape(1, -1))
        background = torch.tensor(self.background, dtype=dtype, device=device)

        tiles_per_chunk = max(1, self.max_chunk_elements // max(1, B * ts * ts * K))
        outputs = []
        for start in range(0, Th * Tw, tiles_per_chunk):
            sl = slice(start, start + tiles_per_chunk)
            idx = slots[:, sl]  # (B, Tc, K)
            Tc = idx.shape[1]
            a = attrs.gather(1, idx.reshape(B, -1, 1).expand(-1, -1, 8)).reshape(B, Tc, 1, K, 8)
            du = pix_u[sl].reshape(1, Tc, -1, 1) - a[..., 0]
            dv = pix_v[sl].reshape(1, Tc, -1, 1) - a[..., 1]
            r2 = (du * du + dv * dv) / (a[..., 2] ** 2)  # (B, Tc, P, K)
            alpha = a[..., 7] * self._falloff(r2) * valid[:, sl, None, :].to(dtype)
            alpha = alpha.clamp(max=self.max_alpha)
            trans = torch.cumprod(1 - alpha, dim=-1)
            weight = alpha * torch.cat([torch.ones_like(trans[..., :1]), trans[..., :-1]], -1)
            rgb = (weight[..., None] * a[..., 4:7]).sum(-2) + trans[..., -1:] * background
            cover = 1 - trans[..., -1]
            z_sum = (weight * a[..., 3]).sum(-1)
            outputs.append(torch.cat([rgb, cover[..., None], z_sum[..., None]], -1))  # (B, Tc, P, 5)

        out = torch.cat(outputs, 1).reshape(B, Th, Tw, ts, ts, 5).permute(0, 1, 3, 2, 4, 5)
        out = out.reshape(B, Th * ts, Tw * ts, 5)[:, :H, :W]
        cover, z_sum = out[..., 3], out[..., 4]
        depth = torch.where(cover > _DEPTH_ALPHA_EPS, z_sum / cover.clamp(min=_DEPTH_ALPHA_EPS),
                            torch.zeros_like(cover))
        return Rendered(out[..., :3], cover, depth)

    def _falloff(self, r2: Tensor) -> Tensor:
        """Truncated Gaussian of squared normalised radius r2: 1 at 0, reaching 0 continuously at cutoff."""
        floor = math.exp(-0.5 * self.cutoff**2)
        return ((torch.exp(-0.5 * r2) - floor) / (1 - floor)).clamp(min=0)
