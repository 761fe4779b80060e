"""The ``soft_mesh`` renderer: SoftRas-style differentiable rendering of triangle meshes on a CPU.

One rasterisation pass (:func:`runner.render.soft_raster.rasterize`) gives the sparse (pixel, face)
fragments, a shader (:mod:`runner.render.shading`) colours them and blends them into a :class:`Rendered`.
Soft mode (Liu et al., "Soft Rasterizer", ICCV 2019) gives every image gradients w.r.t. the vertices,
their colours and the camera; hard mode draws the nearest face of each pixel, for targets and previews.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor

from runner.geometry.cameras import PinholeCamera
from runner.geometry.meshes import Meshes
from runner.render.base import MESHES, TEXTURED_MESHES, Rendered, supersample_average
from runner.render.shading import (
    DirectionalLight,
    albedo,
    check_mesh_batch,
    hard_blend,
    phong,
    set_surface_settings,
    soft_silhouette,
    softmax_blend,
)
from runner.render.soft_raster import SparseFragments, blur_radius, project_faces, rasterize

Shading = Literal["phong", "lambert", "unlit", "silhouette"]


class SoftMeshRenderer:
    """Soft (or hard) rasteriser + shader for :class:`Meshes` seen by :class:`PinholeCamera`.

    Distances, ``sigma`` and the blur radius are in NDC units where the image's shorter side spans 2 (as
    in PyTorch3D, so the same ``sigma`` at the same image size gives the same blur).

    Args:
        sigma: coverage sharpness [NDC units^2], > 0; ``prob = sigmoid(-dist / sigma)`` with ``dist`` the
            signed squared distance to the face. 1e-4 is a 1-2 pixel blur at 128 px.
        gamma: depth-softmax temperature of the colour blend, > 0.
        faces_per_pixel: K, nearest faces blended per pixel, >= 1.
        hard: draw the nearest face containing each pixel centre (alpha in {0, 1}, no blur, no geometry
            gradients); ``sigma``, ``gamma`` and ``faces_per_pixel`` are then unused.
        supersample: s >= 1; render at s times the camera's resolution and average s x s blocks.
        cull_backfaces: skip faces seen from behind (faces are counter-clockwise seen from outside).
        znear: faces with a vertex at camera depth <= znear are culled [scene units], > 0.
        zfar: far end of the depth range of the colour blend [scene units], > znear.
        background: RGB behind the meshes, in [0, 1].
        shading: "phong", "lambert" (no highlights), "unlit" (albedo only) or "silhouette" (white over
            the background, skips all colour work).
        lights: directional lights (see :class:`DirectionalLight` for their frames).
        ambient: ambient light colour (3 floats >= 0).
        specular: specular colour of the material for "phong" (3 floats >= 0).
        shininess: Phong exponent, > 0.
        max_pairs: candidate (pixel, face) pairs tested at once, and fragments per recomputed chunk of the
            backward pass; bounds the memory of both.
    """

    draws = frozenset({MESHES, TEXTURED_MESHES})

    def __init__(self, sigma: float = 1e-4, gamma: float = 1e-4, faces_per_pixel: int = 50, hard: bool = False,
                 supersample: int = 1, cull_backfaces: bool = False, znear: float = 0.01, zfar: float = 100.0,
                 background: Sequence[float] = (0.0, 0.0, 0.0), shading: Shading = "phong",
                 lights: Sequence[DirectionalLight] = (DirectionalLight(),),
                 ambient: Sequence[float] = (0.5, 0.5, 0.5), specular: Sequence[float] = (0.2, 0.2, 0.2),
                 shininess: float = 64.0, max_pairs: int = 2**18):
        if sigma <= 0 or gamma <= 0:
            raise ValueError(f"sigma and gamma must be > 0, got {sigma}, {gamma}")
        if int(faces_per_pixel) != faces_per_pixel or faces_per_pixel < 1:
            raise ValueError(f"faces_per_pixel must be an integer >= 1, got {faces_per_pixel}")
        if int(supersample) != supersample or supersample < 1:
            raise ValueError(f"supersample must be an integer >= 1, got {supersample}")
        set_surface_settings(
            self, cull_backfaces, znear, zfar, background, shading, lights, ambient, specular, shininess
        )
        if max_pairs < 1:
            raise ValueError(f"max_pairs must be > 0, got {max_pairs}")
        self.sigma = float(sigma)
        self.gamma = float(gamma)
        self.faces_per_pixel = int(faces_per_pixel)
        self.hard = bool(hard)
        self.supersample = int(supersample)
        self.max_pairs = int(max_pairs)

    def __call__(self, meshes: Meshes, cameras: PinholeCamera) -> Rendered:
        """Render mesh b through camera b.

        Args:
            meshes: B meshes (use ``meshes.extend(n)`` to see one mesh from n cameras), same dtype as the
                cameras, each with at least one face.
            cameras: B cameras; the image size is ``cameras.image_size``.
        Returns:
            :class:`Rendered`: rgb (B, H, W, 3) blended over the background; alpha (B, H, W), the soft
            silhouette ``1 - prod_k (1 - p_k)`` (in {0, 1} when hard); depth (B, H, W), in soft mode the
            depth-softmax average of the K faces' depths (:func:`~runner.render.shading.softmax_blend`),
            in hard mode the nearest face's depth, 0 where no face is within the blur radius.
            With supersampling, rgb and alpha are block means and depth is the alpha-weighted block mean.
        """
        check_mesh_batch(meshes, cameras)
        H, W = cameras.image_size
        s = self.supersample
        cams = cameras.resized((H * s, W * s)) if s > 1 else cameras
        frags = self.rasterize(meshes, cams)
        background = cams.K.new_tensor(self.background)
        colors = self._shade(meshes, cams, frags)
        if self.hard:
            rgb, alpha, depth = hard_blend(frags, colors, background)
        else:
            alpha = soft_silhouette(frags, self.sigma)
            rgb, depth = softmax_blend(frags, colors, self.sigma, self.gamma, self.znear, self.zfar, background)
        if self.shading == "silhouette":
            rgb = alpha[..., None] + (1 - alpha[..., None]) * background
        return supersample_average(rgb, alpha, depth, s)

    def rasterize(self, meshes: Meshes, cameras: PinholeCamera) -> SparseFragments:
        """The sparse fragments of this renderer's settings at the cameras' own resolution."""
        check_mesh_batch(meshes, cameras)
        uv, z, valid = project_faces(meshes, cameras, self.znear)
        blur = 0.0 if self.hard else blur_radius(self.sigma)
        K = 1 if self.hard else self.faces_per_pixel
        return rasterize(uv, z, valid, meshes.face_to_mesh, len(meshes), cameras.image_size, blur, K,
                         self.cull_backfaces, self.max_pairs)

    def _shade(self, meshes: Meshes, cameras: PinholeCamera, frags: SparseFragments) -> Tensor:
        if self.shading == "silhouette":
            return frags.bary_clipped.new_ones(frags.face.shape[0], 3)
        base = albedo(meshes, frags)
        if self.shading == "unlit":
            return base
        specular = self.specular if self.shading == "phong" else None
        return phong(meshes, cameras, frags, base, self.lights, self.ambient, specular, self.shininess)
