"""Shading and blending of sparse mesh fragments (:class:`~runner.render.soft_raster.SparseFragments`).

Every function works on the flat list of M (pixel, face) fragments and scatters into (B, H, W) images
only at the end, so no pixel is padded to K faces.

* Surface attributes (albedo, normal, world position) are interpolated with ``bary_clipped``.
* Albedo comes from the mesh's UV texture (bilinear, OBJ ``v`` up), else its vertex colours, else white.
* Lighting is Phong (Phong, "Illumination for computer generated pictures", CACM 1975), as in PyTorch3D's
  ``SoftPhongShader``: ``c = albedo * (ambient + sum_l color_l max(0, n.l)) + sum_l specular color_l
  max(0, r.v)^shininess`` with ``r`` the light direction mirrored about the normal, ``v`` the unit vector
  to the camera, and no highlight where ``n.l <= 0``; Lambert drops the specular term. Normals are the
  interpolated area-weighted vertex normals, not flipped for back faces.
* Soft images are blended as in SoftRas (Liu et al., ICCV 2019) / PyTorch3D's ``softmax_rgb_blend``;
  the silhouette is the probabilistic union ``alpha = 1 - prod_k (1 - sigmoid(-dist_k / sigma))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from runner.geometry.cameras import PinholeCamera
from runner.geometry.meshes import Meshes
from runner.render.soft_raster import SparseFragments


@dataclass(frozen=True)
class DirectionalLight:
    """A light at infinity.

    Attributes:
        direction: 3 floats, the direction *towards* the light (normalised when used). In the camera
            frame (OpenCV: x right, y down, z forward), ``(0, 0, -1)`` is a headlight shining from the
            camera; in the world frame the light stays fixed as the camera moves.
        color: 3 floats, linear RGB intensity, >= 0.
        frame: "camera" or "world", the frame ``direction`` is given in.
    """

    direction: Sequence[float] = (0.0, 0.0, -1.0)
    color: Sequence[float] = (0.5, 0.5, 0.5)
    frame: Literal["camera", "world"] = "camera"

    def __post_init__(self):
        if len(self.direction) != 3 or not any(self.direction):
            raise ValueError(f"light direction must be a non-zero 3-vector, got {list(self.direction)}")
        if len(self.color) != 3 or min(self.color) < 0:
            raise ValueError(f"light color must be 3 values >= 0, got {list(self.color)}")
        if self.frame not in ("camera", "world"):
            raise ValueError(f"light frame must be 'camera' or 'world', got {self.frame!r}")

    def world_directions(self, cameras: PinholeCamera) -> Tensor:
        """(B, 3) unit directions towards the light in the world frame, one per camera."""
        d = torch.nn.functional.normalize(cameras.K.new_tensor(self.direction), dim=0)
        if self.frame == "world":
            return d.expand(cameras.batch_size, 3)
        return d @ cameras.cam_from_world[:, :3, :3]  # R^T d, row-vector form


def set_surface_settings(renderer: object, cull_backfaces: bool, znear: float, zfar: float,
                         background: Sequence[float], shading: str, lights: Sequence[DirectionalLight],
                         ambient: Sequence[float], specular: Sequence[float], shininess: float) -> None:
    """Check the settings shared by the mesh renderers and keep them as ``renderer``'s attributes of the same names:
    back-face culling, the depth range [scene units], the background (RGB in [0, 1]), the shading mode, the lights
    and the Phong material. Raises a ValueError naming the first bad one."""
    if not 0 < znear < zfar:
        raise ValueError(f"need 0 < znear < zfar, got znear={znear}, zfar={zfar}")
    if len(background) != 3 or not all(0.0 <= c <= 1.0 for c in background):
        raise ValueError(f"background must be 3 values in [0, 1], got {list(background)}")
    if shading not in ("phong", "lambert", "unlit", "silhouette"):
        raise ValueError(f"shading must be phong, lambert, unlit or silhouette, got {shading!r}")
    for name, rgb in (("ambient", ambient), ("specular", specular)):
        if len(rgb) != 3 or min(rgb) < 0:
            raise ValueError(f"{name} must be 3 values >= 0, got {list(rgb)}")
    if not all(isinstance(light, DirectionalLight) for light in lights):
        raise ValueError(f"lights must be DirectionalLight objects (in YAML: _target_ nodes with _convert_: "
                         f"object), got {[type(light).__name__ for light in lights]}")
    if shininess <= 0:
        raise ValueError(f"shininess must be > 0, got {shininess}")
    renderer.cull_backfaces = bool(cull_backfaces)
    renderer.znear, renderer.zfar = float(znear), float(zfar)
    renderer.background = tuple(float(c) for c in background)
    renderer.shading = shading
    renderer.lights = tuple(lights)
    renderer.ambient = tuple(float(c) for c in ambient)
    renderer.specular = tuple(float(c) for c in specular)
    renderer.shininess = float(shininess)


def check_mesh_batch(meshes: Meshes, cameras: PinholeCamera) -> None:
    """Raise a ValueError unless mesh b is seen by camera b, every mesh has faces and both share a dtype."""
    if len(meshes) != cameras.batch_size:
        raise ValueError(f"{len(meshes)} meshes for {cameras.batch_size} cameras; mesh b is seen by camera b "
                         f"(use meshes.extend(n) to see one mesh from n cameras)")
    empty = [b for b, f in enumerate(meshes.faces) if f.shape[0] == 0]
    if empty:
        raise ValueError(f"meshes {empty} have no faces; remove them from the batch")
    if meshes.verts[0].dtype != cameras.K.dtype:
        raise ValueError(f"mesh dtype {meshes.verts[0].dtype} differs from camera dtype {cameras.K.dtype}")


def pixel_image(frags: SparseFragments) -> Tensor:
    """(M,) int64 image index b of each fragment."""
    H, W = frags.image_size
    return frags.pix // (H * W)


def interpolate(face_values: Tensor, frags: SparseFragments) -> Tensor:
    """Interpolate per-face-vertex values (F, 3, C) at the fragments with ``bary_clipped``; (M, C)."""
    v = face_values.index_select(0, frags.face)  # (M, 3, C)
    b = frags.bary_clipped
    return b[:, 0:1] * v[:, 0] + b[:, 1:2] * v[:, 1] + b[:, 2:3] * v[:, 2]  # faster than a sum over 3 on a CPU


def sample_texture(meshes: Meshes, frags: SparseFragments) -> Tensor:
    """(M, 3) bilinear texture colour at each fragment's interpolated UV.

    UV (0, 0) is the bottom-left corner of the texture image (OBJ convention), texel centres are at
    ``((j + 0.5) / Wt, 1 - (i + 0.5) / Ht)``, and lookups outside [0, 1] clamp to the border texels.
    """
    if meshes.verts_uvs is None or meshes.faces_uvs is None or meshes.texture is None:
        raise ValueError("texturing needs verts_uvs, faces_uvs and texture on the Meshes")
    uv_offsets = torch.cumsum(torch.tensor([0] + [t.shape[0] for t in meshes.verts_uvs[:-1]]), 0).tolist()
    faces_uvs = torch.cat([f.to(torch.int64) + o for f, o in zip(meshes.faces_uvs, uv_offsets)])
    face_uv = torch.cat(meshes.verts_uvs)[faces_uvs]  # (F, 3, 2)
    uv = interpolate(face_uv, frags)
    mesh = meshes.face_to_mesh.index_select(0, frags.face)
    sizes = torch.tensor([t.shape[:2] for t in meshes.texture], device=uv.device)  # (B, 2) = (Ht, Wt)
    starts = torch.cumsum(sizes.prod(1), 0) - sizes.prod(1)
    texels = torch.cat([t.reshape(-1, 3) for t in meshes.texture])
    Ht, Wt, start = sizes[mesh, 0], sizes[mesh, 1], starts[mesh]
    x = uv[:, 0] * Wt - 0.5
    y = (1 - uv[:, 1]) * Ht - 0.5
    x0, y0 = x.detach().floor(), y.detach().floor()
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, y0 = x0.long(), y0.long()

    def texel(i, j):
        i = i.clamp(min=0).minimum(Ht - 1)
        j = j.clamp(min=0).minimum(Wt - 1)
        return texels.index_select(0, start + i * Wt + j)

    top = texel(y0, x0) * (1 - fx) + texel(y0, x0 + 1) * fx
    bottom = texel(y0 + 1, x0) * (1 - fx) + texel(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def albedo(meshes: Meshes, frags: SparseFragments) -> Tensor:
    """(M, 3) surface colour: texture if the meshes have one, else vertex colours, else white."""
    if meshes.texture is not None:
        return sample_texture(meshes, frags)
    if meshes.verts_colors is not None:
        return interpolate(meshes.verts_colors_packed[meshes.faces_packed], frags)
    return frags.bary_clipped.new_ones(frags.face.shape[0], 3)


def phong(meshes: Meshes, cameras: PinholeCamera, frags: SparseFragments, base: Tensor,
          lights: Sequence[DirectionalLight], ambient: Sequence[float], specular: Sequence[float] | None,
          shininess: float) -> Tensor:
    """Phong (or Lambert when ``specular`` is None) colour of each fragment, (M, 3), linear RGB.

    Args:
        meshes: the B rendered meshes (world frame).
        cameras: their B cameras.
        frags: the fragments.
        base: (M, 3) albedo.
        lights: directional lights.
        ambient: 3 floats, ambient light colour.
        specular: 3 floats, specular colour of the material, or None for a purely diffuse surface.
        shininess: Phong exponent, > 0.
    """
    faces = meshes.faces_packed
    normals = torch.nn.functional.normalize(interpolate(meshes.verts_normals_packed()[faces], frags), dim=-1)
    img = pixel_image(frags)
    light = base.new_tensor(ambient).expand_as(base)
    highlight = base.new_zeros(base.shape)
    if specular is not None:
        points = interpolate(meshes.verts_packed[faces], frags)
        to_eye = torch.nn.functional.normalize(cameras.center.index_select(0, img) - points, dim=-1)
    for lamp in lights:
        to_light = lamp.world_directions(cameras).index_select(0, img)  # (M, 3)
        color = base.new_tensor(lamp.color)
        cos = (normals * to_light).sum(-1, keepdim=True)
        light = light + color * cos.clamp(min=0)
        if specular is not None:
            mirrored = 2 * cos * normals - to_light
            spec = (mirrored * to_eye).sum(-1, keepdim=True).clamp(min=0) ** shininess
            highlight = highlight + color * base.new_tensor(specular) * torch.where(cos > 0, spec, 0.0)
    return base * light + highlight


def coverage_log_complement(frags: SparseFragments, sigma: float) -> Tensor:
    """(M,) ``log(1 - sigmoid(-dist / sigma)) = logsigmoid(dist / sigma)``, finite deep inside faces."""
    return torch.nn.functional.logsigmoid(frags.dist / sigma)


def soft_silhouette(frags: SparseFragments, sigma: float) -> Tensor:
    """(B, H, W) ``alpha = 1 - prod_k (1 - sigmoid(-dist_k / sigma))`` over each pixel's fragments."""
    B, (H, W) = frags.batch_size, frags.image_size
    log_t = frags.dist.new_zeros(frags.num_pixels).index_add(0, frags.pix, coverage_log_complement(frags, sigma))
    return (1 - torch.exp(log_t)).reshape(B, H, W)


def softmax_blend(frags: SparseFragments, colors: Tensor, sigma: float, gamma: float, znear: float, zfar: float,
                  background: Tensor, eps: float = 1e-10) -> tuple[Tensor, Tensor]:
    """Blend fragment colours by coverage and depth (SoftRas eq. 6; PyTorch3D ``softmax_rgb_blend``).

    With ``p_k = sigmoid(-dist_k / sigma)``, ``s_k = (zfar - z_k) / (zfar - znear)``, ``s_max = max(max_k s_k,
    eps)``, ``w_k = p_k exp((s_k - s_max) / gamma)`` and ``w_bg = max(exp((eps - s_max) / gamma), eps)``:
    ``rgb = (sum_k w_k c_k + w_bg background) / (sum_k w_k + w_bg)``.

    Args:
        frags: M fragments.
        colors: (M, 3) fragment colours.
        sigma: coverage sharpness [NDC units^2], > 0.
        gamma: depth-softmax temperature, > 0 (smaller: the nearest face dominates).
        znear, zfar: the depth range mapped to [1, 0] [scene units].
        background: (3,) colour behind everything.
    Returns:
        rgb (B, H, W, 3) and depth (B, H, W): ``sum_k w_k z_k / sum_k w_k`` [scene units], the same depth
        softmax without the background term, 0 at pixels without fragments.
    """
    B, (H, W) = frags.batch_size, frags.image_size
    n = frags.num_pixels
    prob = torch.sigmoid(-frags.dist / sigma)
    z_inv = (zfar - frags.zbuf) / (zfar - znear)
    z_inv_max = z_inv.new_full((n,), eps).scatter_reduce(0, frags.pix, z_inv, "amax", include_self=True)
    w = prob * torch.exp((z_inv - z_inv_max.index_select(0, frags.pix)) / gamma)
    w_bg = torch.exp((eps - z_inv_max) / gamma).clamp(min=eps)
    w_sum = w.new_zeros(n).index_add(0, frags.pix, w)
    rgb = colors.new_zeros(n, 3).index_add(0, frags.pix, w[:, None] * colors)
    rgb = (rgb + w_bg[:, None] * background) / (w_sum + w_bg)[:, None]
    z_sum = w.new_zeros(n).index_add(0, frags.pix, w * frags.zbuf)
    hit = torch.zeros(n, dtype=torch.bool, device=w.device).index_fill(0, frags.pix, True)
    depth = torch.where(hit, z_sum / w_sum.clamp(min=torch.finfo(w.dtype).tiny), 0.0)
    return rgb.reshape(B, H, W, 3), depth.reshape(B, H, W)


def hard_blend(frags: SparseFragments, colors: Tensor, background: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Images of the single nearest face per pixel (fragments from a ``faces_per_pixel=1``, blur 0 pass).

    Returns:
        rgb (B, H, W, 3) over ``background``, alpha (B, H, W) in {0, 1}, depth (B, H, W) (0 where empty).
    """
    B, (H, W) = frags.batch_size, frags.image_size
    n = frags.num_pixels
    rgb = background.expand(n, 3).index_put((frags.pix,), colors)
    alpha = colors.new_zeros(n).index_fill(0, frags.pix, 1.0)
    depth = frags.zbuf.new_zeros(n).index_put((frags.pix,), frags.zbuf)
    return rgb.reshape(B, H, W, 3), alpha.reshape(B, H, W), depth.reshape(B, H, W)
