"""The renderer interface shared by every backend.

Conventions (all renderers):
    * Images are NHWC: ``rgb (B, H, W, 3)`` linear RGB in [0, 1], ``alpha (B, H, W)`` soft coverage in
      [0, 1], ``depth (B, H, W)`` camera-space z in scene units, 0 where nothing is hit.
    * Pixel ``(row i, column j)`` is sampled at its centre, which has pixel coordinates ``(u, v) = (j, i)``
      (the OpenCV convention, see :mod:`runner.geometry.cameras`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch
from torch import Tensor


@dataclass(frozen=True)
class Rendered:
    """What every renderer returns.

    Attributes:
        rgb: (B, H, W, 3) linear RGB in [0, 1], composited over the background colour.
        alpha: (B, H, W) soft coverage in [0, 1].
        depth: (B, H, W) camera-space z [scene units]; 0 where nothing is hit (alpha == 0).
    """

    rgb: Tensor
    alpha: Tensor
    depth: Tensor


# What a renderer draws, named by the scene types a task hands it: batched triangle meshes
# (runner.geometry.meshes.Meshes), point clouds / particles (runner.render.splat.PointCloud), analytic primitives
# (runner.render.raycast.PrimitiveScene); TEXTURED_MESHES: meshes coloured by a UV texture (Meshes.texture).
MESHES, POINTS, PRIMITIVES, TEXTURED_MESHES = "meshes", "points", "primitives", "textured meshes"


class Renderer(Protocol):
    """A differentiable renderer of a batch of scenes seen by a batch of cameras.

    ``draws`` names the scene types it takes; a task that renders one kind (e.g. :data:`MESHES`) runs on any
    renderer that declares it.
    """

    draws: ClassVar[frozenset[str]]

    def __call__(self, scene, cameras) -> Rendered: ...


def supersample_average(rgb: Tensor, alpha: Tensor, depth: Tensor, s: int) -> Rendered:
    """Average s x s sample blocks of a render made at s times the resolution.

    Args:
        rgb: (B, sH, sW, 3); alpha: (B, sH, sW); depth: (B, sH, sW), 0 where nothing is hit.
        s: supersampling factor >= 1.
    Returns:
        Rendered at (H, W): mean colour, mean coverage, and depth averaged with the coverage as weights
        (0 where a block has no coverage).
    """
    if s == 1:
        return Rendered(rgb, alpha, depth)
    B, Hs, Ws = alpha.shape
    H, W = Hs // s, Ws // s
    rgb = rgb.reshape(B, H, s, W, s, 3).mean((2, 4))
    cover = alpha.reshape(B, H, s, W, s).sum((2, 4))
    depth_sum = (alpha * depth).reshape(B, H, s, W, s).sum((2, 4))
    depth = torch.where(cover > 0, depth_sum / cover.clamp(min=torch.finfo(cover.dtype).tiny), 0.0)
    return Rendered(rgb, cover / (s * s), depth)
