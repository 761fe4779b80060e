"""Analytic ray casting of textured planes, boxes and spheres (ground truth images and depth maps).

One primary ray per pixel centre (or per sub-pixel with ``supersample``) is intersected exactly with
every primitive: planes in closed form, boxes with the slab method (Kay & Kajiya, "Ray tracing complex
scenes", SIGGRAPH 1986), spheres with the quadratic formula. The nearest hit wins; its surface is shaded
with a procedural texture (:mod:`runner.render.textures`) and Lambert's law under ambient light plus one
directional light, optionally with hard shadows from a shadow ray cast against the same primitives.
Being analytic, this renderer makes ground truth that the mesh rasteriser and the inverse warp being
optimised do not reproduce exactly, which avoids the "inverse crime".

Rendering runs in two passes:

1. *visibility*, without autograd: rays are taken in screen tiles, each tile's bundle is tested
   against the primitives a conservative cone test cannot rule out, ``(B, tile^2, P_tile)`` at a
   time, giving the id of the nearest primitive of every ray (memory is bounded by the tile size);
2. *surface*, with autograd: each ray is intersected again with its own primitive only, giving the hit
   distance, normal and texture coordinates.

Differentiability. Given the id of the primitive a pixel sees, depth, normal, texture coordinates and
shading are smooth functions of the camera (``cam_from_world``, ``K``) and of the primitive parameters
(plane point, box centre / half size / rotation, sphere centre / radius), so gradients are exact there.
The id itself, i.e. which primitive covers a pixel, is a discrete choice with no gradient: silhouette
edges and shadow boundaries do not move under gradient descent here (that is the job of the soft
rasteriser). Supersampled coverage is an average of such discrete choices and has no gradient either.

Conventions: world +y up, OpenCV cameras (:mod:`runner.geometry.cameras`). Solids (boxes, spheres) are
seen from outside; a camera inside a solid does not see it. Planes are two-sided and infinite.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from runner.geometry.cameras import PinholeCamera
from runner.render.base import PRIMITIVES, Rendered, supersample_average
from runner.render.textures import Material, evaluate_texture

_T_MIN = 1e-4  # [m] hits nearer than this along a ray are ignored
_SHADOW_BIAS = 1e-3  # [m] shadow rays start this far off the surface, along its normal
_PARALLEL_EPS = 1e-12  # |direction component| below which a ray counts as parallel to a slab


# ============================================================================================ scene
@dataclass(frozen=True)
class Planes:
    """B x P infinite two-sided planes.

    Attributes:
        point: (B, P, 3) a point on each plane [m], the origin of its texture chart.
        normal: (B, P, 3) unit normals (world frame).
        material: (B, P) textures.
    """

    point: Tensor
    normal: Tensor
    material: Material

    def __post_init__(self):
        _check_shape("Planes.point", self.point, 3, (3,))
        _check_shape("Planes.normal", self.normal, 3, (3,))
        _check_same_prefix("Planes", self.point, [self.normal, self.material.kind])
        if self.normal.numel() and not torch.allclose(self.normal.norm(dim=-1).detach(),
                                                     torch.ones_like(self.normal[..., 0]), atol=1e-4):
            raise ValueError("Planes.normal must have unit length")


@dataclass(frozen=True)
class Boxes:
    """B x P oriented boxes.

    Attributes:
        center: (B, P, 3) box centres [m] (world frame).
        half_size: (B, P, 3) half extents along the box axes [m], > 0.
        rotation: (B, P, 3, 3) rotation world_from_box: its columns are the box axes in the world frame.
        material: (B, P) textures; a face's chart is the two box axes in its plane, from a box corner,
            with the box's local y as ``t`` on the side faces.
    """

    center: Tensor
    half_size: Tensor
    rotation: Tensor
    material: Material

    def __post_init__(self):
        _check_shape("Boxes.center", self.center, 3, (3,))
        _check_shape("Boxes.half_size", self.half_size, 3, (3,))
        _check_shape("Boxes.rotation", self.rotation, 4, (3, 3))
        _check_same_prefix("Boxes", self.center, [self.half_size, self.rotation, self.material.kind])
        if self.half_size.numel() and not bool((self.half_size > 0).all()):
            raise ValueError("Boxes.half_size must be > 0")


@dataclass(frozen=True)
class Spheres:
    """B x P spheres.

    Attributes:
        center: (B, P, 3) centres [m] (world frame).
        radius: (B, P) radii [m], > 0.
        material: (B, P) textures; the chart is (radius x longitude, height above the centre) [m].
    """

    center: Tensor
    radius: Tensor
    material: Material

    def __post_init__(self):
        _check_shape("Spheres.center", self.center, 3, (3,))
        _check_shape("Spheres.radius", self.radius, 2, ())
        _check_same_prefix("Spheres", self.center, [self.radius, self.material.kind])
        if self.radius.numel() and not bool((self.radius > 0).all()):
            raise ValueError("Spheres.radius must be > 0")


@dataclass(frozen=True)
class PrimitiveScene:
    """A batch of B scenes of planes, boxes and spheres (any group may hold 0 primitives).

    Primitive ids run over planes, then boxes, then spheres.
    """

    planes: Planes
    boxes: Boxes
    spheres: Spheres

    def __post_init__(self):
        sizes = {self.planes.point.shape[0], self.boxes.center.shape[0], self.spheres.center.shape[0]}
        if len(sizes) != 1:
            raise ValueError(f"planes, boxes and spheres must share the batch size, got {sorted(sizes)}")
        dtypes = {self.planes.point.dtype, self.boxes.center.dtype, self.spheres.center.dtype}
        if len(dtypes) != 1:
            raise ValueError(f"planes, boxes and spheres must share one dtype, got {dtypes}")

    @staticmethod
    def create(planes: Planes | None = None, boxes: Boxes | None = None,
               spheres: Spheres | None = None) -> PrimitiveScene:
        """A scene from the groups given; missing groups are empty."""
        given = [g for g in (planes, boxes, spheres) if g is not None]
        if not given:
            raise ValueError("a PrimitiveScene needs at least one of planes, boxes, spheres")
        ref = given[0].material.color_a
        B, kw = ref.shape[0], {"dtype": ref.dtype, "device": ref.device}
        empty = Material.constant(torch.zeros(B, 0, 3, **kw))
        return PrimitiveScene(
            planes if planes is not None else Planes(torch.zeros(B, 0, 3, **kw), torch.zeros(B, 0, 3, **kw), empty),
            boxes if boxes is not None else Boxes(torch.zeros(B, 0, 3, **kw), torch.ones(B, 0, 3, **kw),
                                                  torch.zeros(B, 0, 3, 3, **kw), empty),
            spheres if spheres is not None else Spheres(torch.zeros(B, 0, 3, **kw), torch.ones(B, 0, **kw), empty))

    @property
    def batch_size(self) -> int:
        return self.planes.point.shape[0]

    @property
    def num_primitives(self) -> int:
        return self.planes.point.shape[1] + self.boxes.center.shape[1] + self.spheres.center.shape[1]

    @property
    def material(self) -> Material:
        """(B, P) materials of all primitives in id order."""
        return Material.cat([self.planes.material, self.boxes.material, self.spheres.material], dim=1)

    def item(self, index: int) -> PrimitiveScene:
        """Scene ``index`` of the batch, as a batch of one."""
        i = slice(index, index + 1)
        p, b, s = self.planes, self.boxes, self.spheres
        return PrimitiveScene(Planes(p.point[i], p.normal[i], p.material.item(index)),
                              Boxes(b.center[i], b.half_size[i], b.rotation[i], b.material.item(index)),
                              Spheres(s.center[i], s.radius[i], s.material.item(index)))

    def expand(self, batch: int) -> PrimitiveScene:
        """Broadcast a one-scene batch to ``batch`` scenes (no copy)."""
        if self.batch_size == batch:
            return self
        if self.batch_size != 1:
            raise ValueError(f"cannot broadcast a batch of {self.batch_size} scenes to {batch}")
        p, b, s = self.planes, self.boxes, self.spheres
        return PrimitiveScene(
            Planes(p.point.expand(batch, -1, -1), p.normal.expand(batch, -1, -1), p.material.expand(batch)),
            Boxes(b.center.expand(batch, -1, -1), b.half_size.expand(batch, -1, -1),
                  b.rotation.expand(batch, -1, -1, -1), b.material.expand(batch)),
            Spheres(s.center.expand(batch, -1, -1), s.radius.expand(batch, -1), s.material.expand(batch)))


def _check_shape(name: str, x: Tensor, dim: int, tail: tuple[int, ...]) -> None:
    if x.dim() != dim or tuple(x.shape[x.dim() - len(tail):]) != tail:
        raise ValueError(f"{name} must be (B, P{''.join(', ' + str(n) for n in tail)}), got {tuple(x.shape)}")


def _check_same_prefix(group: str, ref: Tensor, others: list[Tensor]) -> None:
    for x in others:
        if tuple(x.shape[:2]) != tuple(ref.shape[:2]):
            raise ValueError(f"{group} fields disagree on (B, P): {tuple(ref.shape[:2])} vs {tuple(x.shape[:2])}")


# ============================================================================================ rays x primitives
def intersect_planes(origins: Tensor, dirs: Tensor, point: Tensor, normal: Tensor) -> Tensor:
    """Ray-plane distances.

    Args:
        origins, dirs: (B, N, 3) ray origins [m] and unit directions (world frame).
        point, normal: (B, P, 3) planes.

    Returns:
        (B, N, P) distance along each ray to each plane [m]; ``inf`` where the ray misses it.
    """
    denom = dirs @ normal.transpose(1, 2)
    num = (point * normal).sum(-1)[:, None, :] - origins @ normal.transpose(1, 2)
    t = num / torch.where(denom.abs() < _PARALLEL_EPS, torch.full_like(denom, _PARALLEL_EPS), denom)
    return torch.where((denom.abs() >= _PARALLEL_EPS) & (t > _T_MIN), t, torch.full_like(t, math.inf))


def intersect_spheres(origins: Tensor, dirs: Tensor, center: Tensor, radius: Tensor) -> Tensor:
    """Ray-sphere distances (outside surface only).

    Args:
        origins, dirs: (B, N, 3) ray origins [m] and unit directions (world frame).
        center: (B, P, 3) sphere centres [m]; radius: (B, P) [m].

    Returns:
        (B, N, P) distance to the first crossing of each sphere [m]; ``inf`` where the ray misses it
        (or starts inside it).
    """
    oc = origins[:, :, None, :] - center[:, None, :, :]
    b = (oc * dirs[:, :, None, :]).sum(-1)
    c = (oc * oc).sum(-1) - radius[:, None, :] ** 2
    disc = b * b - c
    t = -b - torch.sqrt(disc.clamp(min=0))
    return torch.where((disc >= 0) & (t > _T_MIN), t, torch.full_like(t, math.inf))


def intersect_boxes(origins: Tensor, dirs: Tensor, center: Tensor, half_size: Tensor, rotation: Tensor) -> Tensor:
    """Ray-box distances by the slab method (outside surface only).

    Args:
        origins, dirs: (B, N, 3) ray origins [m] and unit directions (world frame).
        center, half_size: (B, P, 3) boxes [m]; rotation: (B, P, 3, 3) world_from_box.

    Returns:
        (B, N, P) distance to the entry point of each box [m]; ``inf`` where the ray misses it (or starts
        inside it).
    """
    B, N, _ = origins.shape
    P = center.shape[1]
    rotation_flat = rotation.permute(0, 2, 1, 3).reshape(B, 3, P * 3)  # one matmul for all boxes
    o_box = (origins @ rotation_flat).view(B, N, P, 3) - torch.einsum("bpk,bpkj->bpj", center, rotation)[:, None]
    d_box = (dirs @ rotation_flat).view(B, N, P, 3)
    lo, hi = _slabs(o_box, d_box, half_size[:, None])
    t_near, t_far = lo.amax(-1), hi.amin(-1)
    return torch.where((t_near <= t_far) & (t_near > _T_MIN), t_near, torch.full_like(t_near, math.inf))


def _slabs(o: Tensor, d: Tensor, half: Tensor) -> tuple[Tensor, Tensor]:
    """Entry and exit distances (..., 3) of rays ``o + t d`` (box frame) through the slabs |x_k| <= half_k."""
    # A ray parallel to a slab gets a huge finite 1/d: the slab is then all or nothing, as it should be.
    inv = d.reciprocal().clamp(-1 / _PARALLEL_EPS, 1 / _PARALLEL_EPS)
    centre, spread = -o * inv, half * inv.abs()
    return centre - spread, centre + spread


def nearest_hits(scene: PrimitiveScene, origins: Tensor, dirs: Tensor, chunk_size: int) -> Tensor:
    """Id of the nearest primitive along every ray, without gradients.

    Each chunk of rays only tests the boxes and spheres that :func:`_bundle_may_hit` cannot rule out.

    Args:
        scene: B scenes.
        origins, dirs: (B, N, 3) rays (world frame, unit directions).
        chunk_size: rays per batch element intersected at once; memory ~ 50 * B * chunk_size * P bytes.

    Returns:
        (B, N) int64 primitive ids (planes, then boxes, then spheres); -1 where a ray hits nothing.
    """
    B, N, _ = origins.shape
    ids = torch.full((B, N), -1, dtype=torch.int64, device=origins.device)
    if scene.num_primitives == 0 or N == 0:
        return ids
    p, b, s = scene.planes, scene.boxes, scene.spheres
    n_planes, n_boxes = p.point.shape[1], b.center.shape[1]
    with torch.no_grad():
        for start in range(0, N, chunk_size):
            o, d = origins[:, start:start + chunk_size], dirs[:, start:start + chunk_size]
            reachable = _bundle_may_hit(o, d, torch.cat([b.center, s.center], 1),
                                        torch.cat([b.half_size.norm(dim=-1), s.radius], 1))
            box_ids = torch.nonzero(reachable[:n_boxes])[:, 0]
            sphere_ids = torch.nonzero(reachable[n_boxes:])[:, 0]
            t = torch.cat([intersect_planes(o, d, p.point, p.normal),
                           intersect_boxes(o, d, b.center[:, box_ids], b.half_size[:, box_ids], b.rotation[:, box_ids]),
                           intersect_spheres(o, d, s.center[:, sphere_ids], s.radius[:, sphere_ids])], dim=-1)
            if t.shape[-1] == 0:
                continue
            candidates = torch.cat([torch.arange(n_planes, device=ids.device), n_planes + box_ids,
                                    n_planes + n_boxes + sphere_ids])
            t_min, arg = t.min(-1)
            ids[:, start:start + chunk_size] = torch.where(torch.isfinite(t_min), candidates[arg], -1)
    return ids


def _bundle_may_hit(origins: Tensor, dirs: Tensor, center: Tensor, radius: Tensor) -> Tensor:
    """(P,) False for bounding spheres that no ray of the bundle can reach, in any scene of the batch.

    A conservative cone test: if all origins lie in a ball (o_c, r_o) and all directions within angle
    theta of an axis a, a ray meeting the sphere (c, r) implies a ray from o_c meeting (c, r + r_o) (shift
    it by at most r_o), hence angle(c - o_c, a) <= theta + asin((r + r_o) / |c - o_c|).

    Args:
        origins, dirs: (B, N, 3) the bundle (unit directions).
        center: (B, P, 3) bounding-sphere centres; radius: (B, P) their radii.
    """
    o_c = origins.mean(1, keepdim=True)
    r_o = (origins - o_c).norm(dim=-1).amax(1, keepdim=True)  # (B, 1)
    axis = torch.nn.functional.normalize(dirs.sum(1, keepdim=True), dim=-1)
    theta = torch.acos((dirs * axis).sum(-1).amin(1, keepdim=True).clamp(-1.0, 1.0))  # (B, 1)
    to_center = center - o_c
    dist = to_center.norm(dim=-1)
    reach = radius + r_o
    angle = torch.acos(((to_center * axis).sum(-1) / dist.clamp(min=1e-12)).clamp(-1.0, 1.0))
    margin = torch.asin((reach / dist.clamp(min=1e-12)).clamp(max=1.0))
    return ((dist <= reach) | (angle <= theta + margin + 1e-6)).any(0)


# ============================================================================================ one ray x its primitive
def _plane_surface(o: Tensor, d: Tensor, point: Tensor, normal: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Distance (M,), normal facing the ray (M, 3) and chart uv (M, 2) of M rays on their planes."""
    cos = (d * normal).sum(-1)
    t = ((point - o) * normal).sum(-1) / cos
    rel = o + t[:, None] * d - point
    helper = torch.zeros_like(normal)
    vertical = normal[:, 1].abs() >= 0.9
    helper[:, 1] = (~vertical).to(normal.dtype)
    helper[:, 2] = vertical.to(normal.dtype)
    s_axis = torch.nn.functional.normalize(torch.cross(helper, normal, dim=-1), dim=-1)
    t_axis = torch.cross(normal, s_axis, dim=-1)
    uv = torch.stack([(rel * s_axis).sum(-1), (rel * t_axis).sum(-1)], -1)
    return t, torch.where((cos > 0)[:, None], -normal, normal), uv


# Box face charts: for the face normal to box axis k, uv = (q[_S_AXIS[k]], q[_T_AXIS[k]]).
_S_AXIS = (2, 0, 0)
_T_AXIS = (1, 2, 1)


def _box_surface(o: Tensor, d: Tensor, center: Tensor, half: Tensor,
                 rotation: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Distance (M,), outward normal (M, 3) and face chart uv (M, 2) of M rays on their boxes."""
    o_box = ((o - center)[:, None, :] @ rotation)[:, 0]
    d_box = (d[:, None, :] @ rotation)[:, 0]
    lo, _ = _slabs(o_box, d_box, half)
    axis = lo.argmax(-1, keepdim=True)  # the slab entered last is the face hit
    t = lo.gather(-1, axis)[:, 0]
    sign = -torch.sign(d_box.gather(-1, axis))
    normal = rotation.gather(-1, axis[:, None, :].expand(-1, 3, 1))[..., 0] * sign
    q = o_box + t[:, None] * d_box + half  # in [0, 2 half]: the chart starts at a corner
    s_idx = torch.tensor(_S_AXIS, device=o.device)[axis]
    t_idx = torch.tensor(_T_AXIS, device=o.device)[axis]
    return t, normal, torch.cat([q.gather(-1, s_idx), q.gather(-1, t_idx)], -1)


def _sphere_surface(o: Tensor, d: Tensor, center: Tensor, radius: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Distance (M,), outward normal (M, 3) and chart uv (M, 2) of M rays on their spheres."""
    oc = o - center
    b = (oc * d).sum(-1)
    c = (oc * oc).sum(-1) - radius**2
    t = -b - torch.sqrt((b * b - c).clamp(min=1e-12))
    q = oc + t[:, None] * d
    uv = torch.stack([radius * torch.atan2(q[:, 0], q[:, 2]), q[:, 1]], -1)
    return t, q / radius[:, None], uv


def surface_at_hits(scene: PrimitiveScene, origins: Tensor, dirs: Tensor,
                    ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Differentiable geometry of every ray's hit on its primitive ``ids`` (from :func:`nearest_hits`).

    Args:
        scene: B scenes.
        origins, dirs: (B, N, 3) rays (world frame, unit directions).
        ids: (B, N) int64 primitive ids, -1 for no hit.

    Returns:
        t (B, N) hit distance [m], normal (B, N, 3) unit, facing the ray, uv (B, N, 2) texture chart [m];
        all 0 where ``ids == -1``.
    """
    B, N = ids.shape
    t = torch.zeros(B, N, dtype=origins.dtype, device=origins.device)
    normal = torch.zeros(B, N, 3, dtype=origins.dtype, device=origins.device)
    uv = torch.zeros(B, N, 2, dtype=origins.dtype, device=origins.device)
    batch_idx = torch.arange(B, device=ids.device)[:, None].expand(B, N)
    n_planes, n_boxes = scene.planes.point.shape[1], scene.boxes.center.shape[1]
    p, b, s = scene.planes, scene.boxes, scene.spheres
    groups = [
        (0, n_planes, lambda bi, i, o, d: _plane_surface(o, d, p.point[bi, i], p.normal[bi, i])),
        (n_planes, n_boxes, lambda bi, i, o, d: _box_surface(o, d, b.center[bi, i], b.half_size[bi, i],
                                                             b.rotation[bi, i])),
        (n_planes + n_boxes, s.center.shape[1],
         lambda bi, i, o, d: _sphere_surface(o, d, s.center[bi, i], s.radius[bi, i])),
    ]
    for offset, count, surface in groups:
        sel = (ids >= offset) & (ids < offset + count)
        if not bool(sel.any()):
            continue
        t_g, n_g, uv_g = surface(batch_idx[sel], ids[sel] - offset, origins[sel], dirs[sel])
        t[sel], normal[sel], uv[sel] = t_g, n_g, uv_g
    return t, normal, uv


# ============================================================================================ renderer
class RaycastRenderer:
    """Analytic, textured, Lambert-shaded images of :class:`PrimitiveScene` batches.

    Args:
        background: RGB colour of pixels that hit nothing, in [0, 1].
        ambient: fraction of the albedo lit everywhere, in [0, 1]; the directional light adds up to
            ``1 - ambient`` times the albedo, so colours stay in [0, 1].
        light_dir: world direction *towards* the directional light (normalised here).
        shadows: cast a shadow ray from every hit towards the light (hard shadows, no gradient).
        supersample: S >= 1; S x S samples per pixel, averaged (anti-aliasing, soft edges).
        tile_size: rays are intersected in square tiles of this many (sub-)pixels a side; each tile only
            tests the primitives its bundle of rays can reach, and memory is ~ 50 B x tile_size^2 x P.
    """

    draws = frozenset({PRIMITIVES})

    def __init__(self, background: Sequence[float] = (0.0, 0.0, 0.0), ambient: float = 0.35,
                 light_dir: Sequence[float] = (0.4, 1.0, -0.3), shadows: bool = True, supersample: int = 1,
                 tile_size: int = 32):
        if len(background) != 3 or not all(0.0 <= c <= 1.0 for c in background):
            raise ValueError(f"background must be 3 values in [0, 1], got {list(background)}")
        if not 0.0 <= ambient <= 1.0:
            raise ValueError(f"ambient must be in [0, 1], got {ambient}")
        if len(light_dir) != 3 or math.hypot(*light_dir) == 0.0:
            raise ValueError(f"light_dir must be a non-zero 3-vector, got {list(light_dir)}")
        if int(supersample) != supersample or supersample < 1:
            raise ValueError(f"supersample must be an integer >= 1, got {supersample}")
        if tile_size < 1:
            raise ValueError(f"tile_size must be >= 1, got {tile_size}")
        self.background = tuple(float(c) for c in background)
        self.ambient = float(ambient)
        norm = math.hypot(*light_dir)
        self.light_dir = tuple(float(c) / norm for c in light_dir)
        self.shadows = bool(shadows)
        self.supersample = int(supersample)
        self.tile_size = int(tile_size)

    def __call__(self, scene: PrimitiveScene, cameras: PinholeCamera) -> Rendered:
        """Render ``scene`` (batch B, or 1 broadcast to all cameras) from ``cameras`` (batch B).

        Returns:
            rgb (B, H, W, 3) shaded colour over the background; alpha (B, H, W) fraction of samples that
            hit a primitive (in {0, 1} without supersampling); depth (B, H, W) camera-space z of the
            nearest hit [m] averaged over the hitting samples, 0 where nothing is hit.
        """
        if scene.planes.point.dtype != cameras.K.dtype:
            raise ValueError(f"scene dtype {scene.planes.point.dtype} differs from camera dtype {cameras.K.dtype}")
        scene = scene.expand(cameras.batch_size)
        H, W = cameras.image_size
        S = self.supersample
        cams = cameras.resized((H * S, W * S)) if S > 1 else cameras
        origins, dirs = cams.pixel_rays()
        B = cams.batch_size
        order = _tile_order(H * S, W * S, self.tile_size, origins.device)  # rays of one tile are consecutive
        origins, dirs = origins.reshape(B, -1, 3)[:, order], dirs.reshape(B, -1, 3)[:, order]
        chunk = self.tile_size**2

        ids = nearest_hits(scene, origins, dirs, chunk)
        hit = ids >= 0
        t, normal, uv = surface_at_hits(scene, origins, dirs, ids)
        points = origins + t[..., None] * dirs

        albedo = torch.zeros_like(points)
        batch_idx = torch.arange(B, device=ids.device)[:, None].expand_as(ids)
        albedo[hit] = evaluate_texture(scene.material.take(batch_idx[hit], ids[hit]), uv[hit])
        light = torch.tensor(self.light_dir, dtype=points.dtype, device=points.device)
        lit = (normal @ light).clamp(min=0)
        if self.shadows:  # only surfaces that face the light can be shadowed
            facing = hit & (lit > 0)
            shadow_origins = (points + _SHADOW_BIAS * normal).detach()
            blocked = torch.zeros_like(hit)
            for i in range(B):
                o = shadow_origins[i, facing[i]][None]
                blocked[i, facing[i]] = nearest_hits(scene.item(i), o, light.expand_as(o), chunk)[0] >= 0
            lit = lit * (~blocked).to(lit.dtype)
        shade = albedo * (self.ambient + (1 - self.ambient) * lit)[..., None]
        background = torch.tensor(self.background, dtype=points.dtype, device=points.device)
        rgb = torch.where(hit[..., None], shade, background)

        R_z, t_z = cams.cam_from_world[:, None, 2, :3], cams.cam_from_world[:, None, 2, 3]
        depth = torch.where(hit, (points * R_z).sum(-1) + t_z, torch.zeros_like(t))
        alpha = hit.to(rgb.dtype)
        raster = torch.argsort(order)  # back from tile order to row-major pixels
        fine = (B, H * S, W * S)
        return supersample_average(rgb[:, raster].reshape(*fine, 3), alpha[:, raster].reshape(fine),
                                   depth[:, raster].reshape(fine), S)


def _tile_order(H: int, W: int, tile: int, device: torch.device) -> Tensor:
    """(H W,) permutation of row-major pixel indices that lists the pixels tile by tile."""
    v, u = torch.meshgrid(torch.arange(H, device=device), torch.arange(W, device=device), indexing="ij")
    tiles_per_row = -(-W // tile)
    key = ((v // tile) * tiles_per_row + u // tile) * tile * tile + (v % tile) * tile + u % tile
    return torch.argsort(key.reshape(-1))
