"""Batched pinhole cameras in the OpenCV convention.

Frames and conventions used everywhere in dwx:

============  =====================  ==============================================
frame         axes                   notes
============  =====================  ==============================================
world         right-handed           scenes are usually +y up (gravity along -y)
camera        x right, y down,       OpenCV / COLMAP / KITTI convention;
(OpenCV)      z forward              ``points_cam = cam_from_world @ points_world``
camera        x right, y up,         OpenGL; camera looks along -z
(OpenGL)      z backward
camera        x left, y up,          PyTorch3D; camera looks along +z
(PyTorch3D)   z forward              (row-vector convention, ``X_cam = X_world R + T``)
pixels        u right, v down        pixel (row i, col j) has its centre at (u, v) = (j, i)
============  =====================  ==============================================

``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` in pixels; ``u = fx x / z + cx``, ``v = fy y / z + cy``.
The conversions below are exact rotations by 180 degrees about one camera axis, so a round trip
through them returns the input to floating point precision. Pixel centres differ by half a pixel from
PyTorch3D's ``cameras_from_opencv_projection``, which puts pixel (i, j)'s centre at (j + 0.5, i + 0.5):
add 0.5 to cx and cy when handing K to it (with that, PyTorch3D's soft silhouettes match dwx's
``soft_mesh`` to 1e-5, see ``benchmarks/render.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from runner.geometry.transforms import invert_rigid, transform_points

# diag(1, -1, -1): OpenCV <-> OpenGL camera axes; diag(-1, -1, 1): OpenCV <-> PyTorch3D camera axes.
_CV_TO_GL = (1.0, -1.0, -1.0)
_CV_TO_P3D = (-1.0, -1.0, 1.0)


@dataclass(frozen=True)
class PinholeCamera:
    """A batch of B pinhole cameras.

    Attributes:
        K: (B, 3, 3) intrinsics in pixels.
        cam_from_world: (B, 4, 4) rigid transform, world -> OpenCV camera frame.
        image_size: (H, W) in pixels, the image K refers to.
    """

    K: Tensor
    cam_from_world: Tensor
    image_size: tuple[int, int]

    def __post_init__(self):
        if self.K.dim() != 3 or self.K.shape[-2:] != (3, 3):
            raise ValueError(f"K must be (B, 3, 3), got {tuple(self.K.shape)}")
        if self.cam_from_world.dim() != 3 or self.cam_from_world.shape[-2:] != (4, 4):
            raise ValueError(f"cam_from_world must be (B, 4, 4), got {tuple(self.cam_from_world.shape)}")
        if self.K.shape[0] != self.cam_from_world.shape[0]:
            raise ValueError(f"batch sizes differ: K {self.K.shape[0]}, pose {self.cam_from_world.shape[0]}")

    # ------------------------------------------------------------------ construction
    @staticmethod
    def intrinsics(fx, fy, cx, cy, batch: int = 1, device=None, dtype=torch.float32) -> Tensor:
        """(B, 3, 3) intrinsics from scalars."""
        K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], device=device, dtype=dtype)
        return K.expand(batch, 3, 3).clone()

    @staticmethod
    def intrinsics_from_fov(fov_deg: float, image_size: tuple[int, int], batch: int = 1, device=None,
                            dtype=torch.float32) -> Tensor:
        """(B, 3, 3) intrinsics for a vertical field of view [deg], square pixels, centred principal point."""
        H, W = image_size
        f = 0.5 * H / math.tan(math.radians(fov_deg) / 2)
        return PinholeCamera.intrinsics(f, f, (W - 1) / 2, (H - 1) / 2, batch, device, dtype)

    @staticmethod
    def look_at(eye: Tensor, at: Tensor, up: Tensor | None = None) -> Tensor:
        """(B, 4, 4) ``cam_from_world`` of cameras at ``eye`` (B, 3) looking at ``at`` (B, 3).

        ``up`` (B, 3) is the world direction that appears upwards in the image (default +y).
        """
        if up is None:
            up = torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype, device=eye.device).expand_as(eye)
        z = torch.nn.functional.normalize(at - eye, dim=-1)                   # forward
        x = torch.nn.functional.normalize(torch.cross(z, up.expand_as(z), dim=-1), dim=-1)  # right
        y = torch.cross(z, x, dim=-1)                                          # down
        R = torch.stack([x, y, z], dim=-2)                                     # rows: camera axes in world
        t = -(R @ eye.unsqueeze(-1)).squeeze(-1)
        return rigid_matrix(R, t)

    @staticmethod
    def orbit(elevation_deg: Tensor, azimuth_deg: Tensor, distance: Tensor | float,
              at: Tensor | None = None) -> Tensor:
        """(B, 4, 4) ``cam_from_world`` on a sphere around ``at`` (default origin), +y up.

        Azimuth 0 looks along -z from +z (the NMR / SoftRas / PyTorch3D ``look_at_view_transform`` view).
        """
        el, az = torch.deg2rad(elevation_deg), torch.deg2rad(azimuth_deg)
        dist = torch.as_tensor(distance, dtype=el.dtype, device=el.device)
        eye = torch.stack([dist * torch.cos(el) * torch.sin(az), dist * torch.sin(el),
                           dist * torch.cos(el) * torch.cos(az)], dim=-1)
        if at is None:
            at = torch.zeros_like(eye)
        else:
            eye = eye + at
        return PinholeCamera.look_at(eye, at)

    # ------------------------------------------------------------------ properties
    @property
    def batch_size(self) -> int:
        return self.K.shape[0]

    @property
    def world_from_cam(self) -> Tensor:
        """(B, 4, 4) camera -> world."""
        return invert_rigid(self.cam_from_world)

    @property
    def center(self) -> Tensor:
        """(B, 3) camera centres in world coordinates."""
        return self.world_from_cam[:, :3, 3]

    def to(self, device=None, dtype=None) -> PinholeCamera:
        return PinholeCamera(self.K.to(device=device, dtype=dtype),
                             self.cam_from_world.to(device=device, dtype=dtype), self.image_size)

    def __getitem__(self, index) -> PinholeCamera:
        K, pose = self.K[index], self.cam_from_world[index]
        if K.dim() == 2:
            K, pose = K[None], pose[None]
        return PinholeCamera(K, pose, self.image_size)

    def resized(self, image_size: tuple[int, int]) -> PinholeCamera:
        """The same cameras for an image resized to ``image_size`` (H, W) (pixel centres preserved)."""
        H0, W0 = self.image_size
        H1, W1 = image_size
        sx, sy = W1 / W0, H1 / H0
        S = torch.tensor([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]],
                         dtype=self.K.dtype, device=self.K.device)
        return PinholeCamera(S @ self.K, self.cam_from_world, (H1, W1))

    # ------------------------------------------------------------------ projection
    def world_to_cam(self, points_world: Tensor) -> Tensor:
        """(B, N, 3) world points -> (B, N, 3) OpenCV camera coordinates."""
        return transform_points(self.cam_from_world, points_world)

    def project(self, points_world: Tensor, eps: float = 1e-8) -> tuple[Tensor, Tensor]:
        """Project world points to pixels.

        Args:
            points_world: (B, N, 3).
        Returns:
            pix (B, N, 2) as (u, v) in pixels and depth (B, N) = camera-space z [scene units].
        """
        points_cam = self.world_to_cam(points_world)
        return project_cam(points_cam, self.K, eps), points_cam[..., 2]

    def unproject(self, pix: Tensor, depth: Tensor) -> Tensor:
        """Inverse of :meth:`project`: pix (B, N, 2) and depth (B, N) -> world points (B, N, 3)."""
        points_cam = unproject_cam(pix, depth, self.K)
        return transform_points(self.world_from_cam, points_cam)

    def pixel_rays(self) -> tuple[Tensor, Tensor]:
        """Rays through every pixel centre.

        Returns:
            origins (B, H, W, 3) and unit directions (B, H, W, 3) in world coordinates.
        """
        H, W = self.image_size
        v, u = torch.meshgrid(torch.arange(H, dtype=self.K.dtype, device=self.K.device),
                              torch.arange(W, dtype=self.K.dtype, device=self.K.device), indexing="ij")
        pix = torch.stack([u, v], -1).reshape(1, -1, 2).expand(self.batch_size, -1, -1)
        dirs_cam = unproject_cam(pix, torch.ones_like(pix[..., 0]), self.K)
        R_wc = self.world_from_cam[:, :3, :3]
        dirs = torch.nn.functional.normalize(dirs_cam @ R_wc.transpose(1, 2), dim=-1)
        origins = self.center[:, None, :].expand_as(dirs)
        B = self.batch_size
        return origins.reshape(B, H, W, 3), dirs.reshape(B, H, W, 3)

    # ------------------------------------------------------------------ conventions
    def to_opengl(self) -> Tensor:
        """(B, 4, 4) ``cam_from_world`` with OpenGL camera axes (x right, y up, looking along -z)."""
        return _flip_axes(self.cam_from_world, _CV_TO_GL)

    @staticmethod
    def from_opengl(K: Tensor, gl_cam_from_world: Tensor, image_size: tuple[int, int]) -> PinholeCamera:
        return PinholeCamera(K, _flip_axes(gl_cam_from_world, _CV_TO_GL), image_size)

    def to_pytorch3d(self) -> tuple[Tensor, Tensor]:
        """PyTorch3D's (R (B, 3, 3), T (B, 3)) with ``X_cam = X_world @ R + T`` (row vectors)."""
        M = _flip_axes(self.cam_from_world, _CV_TO_P3D)
        return M[:, :3, :3].transpose(1, 2), M[:, :3, 3]

    @staticmethod
    def from_pytorch3d(K: Tensor, R: Tensor, T: Tensor, image_size: tuple[int, int]) -> PinholeCamera:
        M = rigid_matrix(R.transpose(1, 2), T)
        return PinholeCamera(K, _flip_axes(M, _CV_TO_P3D), image_size)


def rigid_matrix(R: Tensor, t: Tensor) -> Tensor:
    """(B, 4, 4) homogeneous matrix from rotation R (B, 3, 3) and translation t (B, 3)."""
    top = torch.cat([R, t.unsqueeze(-1)], dim=-1)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def project_cam(points_cam: Tensor, K: Tensor, eps: float = 1e-8) -> Tensor:
    """(B, N, 3) camera points -> (B, N, 2) pixels (u, v); z is clamped to ``eps`` to stay finite."""
    z = points_cam[..., 2:3].clamp(min=eps)
    xy = points_cam[..., :2] / z
    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
    cx, cy = K[:, 0, 2, None], K[:, 1, 2, None]
    return torch.stack([fx * xy[..., 0] + cx, fy * xy[..., 1] + cy], dim=-1)


def unproject_cam(pix: Tensor, depth: Tensor, K: Tensor) -> Tensor:
    """Pixels (B, N, 2) with depth (B, N) -> (B, N, 3) camera points."""
    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
    cx, cy = K[:, 0, 2, None], K[:, 1, 2, None]
    x = (pix[..., 0] - cx) / fx * depth
    y = (pix[..., 1] - cy) / fy * depth
    return torch.stack([x, y, depth], dim=-1)


def _flip_axes(cam_from_world: Tensor, signs: tuple[float, float, float]) -> Tensor:
    """Left-multiply by diag(signs, 1): re-express the camera frame with flipped axes (an involution)."""
    D = torch.diag(torch.tensor([*signs, 1.0], dtype=cam_from_world.dtype, device=cam_from_world.device))
    return D @ cam_from_world
