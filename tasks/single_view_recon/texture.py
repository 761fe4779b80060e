"""A UV texture for the deformed icosphere: an equirectangular atlas of the template sphere.

Every template vertex keeps the direction it had on the sphere (through subdivisions too), so its texture
coordinates stay put while the shape deforms: ``u`` is the longitude about +y, ``v`` the latitude, as in a
world map. The map wraps around at the seam ``u = 0 | 1``: a face that crosses it takes its corners past 1 on
one side, and the texture the renderer sees is the optimised one with its first half of columns appended
on the right (:func:`periodic`), so such a face samples the same texels as its neighbours across the seam.
Faces that hold a pole are squeezed into a narrow band of the map (the only distortion of the atlas).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

WRAP = 1.5  # the rendered texture spans u in [0, WRAP): the atlas [0, 1) plus its first half again


def longitude_latitude(directions: Tensor) -> tuple[Tensor, Tensor]:
    """(V,) longitude ``u`` about +y and (V,) latitude ``v`` (+y up), both in [0, 1], of (V, 3) directions."""
    d = torch.nn.functional.normalize(directions, dim=-1)
    u = torch.atan2(d[:, 0], d[:, 2]) / (2 * math.pi) + 0.5
    v = torch.asin(d[:, 1].clamp(-1.0, 1.0)) / math.pi + 0.5
    return u, v


def sphere_uvs(directions: Tensor, faces: Tensor) -> tuple[Tensor, Tensor]:
    """Texture coordinates of each face corner, in the periodic texture's frame.

    Args:
        directions: (V, 3) the vertices' directions from the sphere's centre (any length > 0).
        faces: (F, 3) int64 vertex indices.

    Returns:
        verts_uvs (3F, 2) in [0, 1] (OBJ style, v up) of the texture :func:`periodic` makes, and faces_uvs (F, 3)
        indexing them (one UV per face corner, so seam faces need no shared vertex).
    """
    u, v = longitude_latitude(directions)
    cu, cv = u[faces], v[faces]  # (F, 3)
    crosses = (cu.max(1).values - cu.min(1).values) > 0.5  # the face spans the seam
    cu = torch.where(crosses[:, None] & (cu < 0.5), cu + 1.0, cu)
    verts_uvs = torch.stack([cu / WRAP, cv], -1).reshape(-1, 2)
    faces_uvs = torch.arange(verts_uvs.shape[0], device=faces.device).reshape(-1, 3)
    return verts_uvs, faces_uvs


def periodic(texture: Tensor) -> Tensor:
    """(Ht, Wt, 3) atlas -> (Ht, WRAP * Wt, 3): its first ``Wt / 2`` columns appended on the right (Wt even)."""
    width = texture.shape[1]
    return torch.cat([texture, texture[:, : round((WRAP - 1) * width)]], 1)


def initial_logits(size: tuple[int, int], rgb: Tensor, mask: Tensor) -> Tensor:
    """(Ht, Wt, 3) logits of a texture filled with the mean colour of the object in the target images.

    Args:
        size: (Ht, Wt) of the atlas.
        rgb: (N, H, W, 3) target images in [0, 1].
        mask: (N, H, W) their silhouettes in [0, 1].
    """
    weight = mask[..., None]
    mean = (rgb * weight).sum((0, 1, 2)) / weight.sum().clamp(min=1e-6)
    return torch.logit(mean.clamp(0.02, 0.98)).expand(*size, 3).clone()


def vertex_colors(image: Tensor, directions: Tensor) -> Tensor:
    """(V, 3) colours of the periodic texture ``image`` (Ht, WRAP * Wt, 3) at the vertices' own UVs (for viewers
    that show vertex colours, such as TensorBoard's mesh plugin); ``directions`` (V, 3) as in :func:`sphere_uvs`."""
    u, v = longitude_latitude(directions)
    grid = torch.stack([2 * u / WRAP - 1, 1 - 2 * v], -1)[None, None]  # (1, 1, V, 2): x right, y down in [-1, 1]
    sampled = torch.nn.functional.grid_sample(image.permute(2, 0, 1)[None], grid, align_corners=False,
                                              padding_mode="border")
    return sampled[0, :, 0].T
