"""Soft rasterisation of triangle meshes into a sparse list of (pixel, face) fragments.

The model is SoftRas (Liu et al., "Soft Rasterizer: A Differentiable Renderer for Image-based 3D
Reasoning", ICCV 2019) with the conventions of PyTorch3D's ``rasterize_meshes`` (Ravi et al.,
"Accelerating 3D Deep Learning with PyTorch3D", 2020), so that the same ``sigma`` blurs the same amount:

* Vertices are projected by a :class:`~runner.geometry.cameras.PinholeCamera` (OpenCV axes, pixel
  ``(row i, col j)`` sampled at its centre ``(u, v) = (j, i)``).
* Distances are measured in **NDC units, where the shorter image side spans 2**: one pixel is
  ``2 / min(H, W)`` units long on both axes, exactly as in PyTorch3D's NDC screen space.
* ``dist`` is the *signed squared* distance from the pixel centre to the projected triangle's boundary,
  negative inside (inside = all three screen barycentrics >= 0).
* A face is a candidate of a pixel when its camera depth is > ``znear`` at all three vertices (faces that
  touch the near plane are culled, not clipped), it is not a culled back face, it is not
  degenerate (|twice its screen area| > 1e-8 NDC^2, PyTorch3D's test), and the pixel is inside it or
  ``dist <= blur_radius``. For a soft renderer
  ``blur_radius = sigma * ln(1 / eps - 1)`` (``eps = 1e-4``), the squared distance beyond which the coverage
  ``sigmoid(-dist / sigma)`` is below ``eps``; ``blur_radius = 0`` keeps only the faces that contain the
  pixel (hard rasterisation).
* Each pixel keeps its ``faces_per_pixel`` candidates nearest in depth (ties broken by face index).
* ``bary`` are perspective-correct barycentrics of the pixel centre (unclipped). ``bary_clipped`` are
  the screen barycentrics clamped to >= 0, renormalised, then perspective-corrected: the closest point
  of the triangle in screen space for a pixel outside it, the true barycentrics inside. ``zbuf`` is the
  camera depth interpolated with ``bary_clipped`` [scene units]; it decides the depth order.
  (PyTorch3D clips after the perspective correction instead; the two agree inside every face, so the
  silhouette is identical, and differ only in where an outside pixel's colour and depth are read.)

Implementation choice: plain vectorised PyTorch, no compiled extension, because it meets the speed
targets without one (icosphere level 4 at 128 px, K = 50, sigma = 1e-4: silhouette forward + backward
about 50 ms of CPU time on one thread; see ``benchmarks/render.py``). Instead of PyTorch3D's per-pixel
loop over a bin's faces (``O(H W F_bin)`` work), every face enumerates the pixel centres of its
blur-expanded screen bounding box, row by row, so the work is the sum of the faces' footprints, not
``H W F``: at ``sigma = 1e-4`` most pixels have a few candidates, far fewer than ``K``. Candidates are
tested with gradients off, in chunks of about ``max_pairs`` pairs (bounding memory); the per-pixel top-K
is a radix select that sorts only the fragments tied in the depth bin of a pixel's K-th one, and only for
pixels with more than K candidates. The survivors are evaluated again with autograd on, as separate 1-D
coordinate tensors (elementwise kernels on those are much faster on a CPU than reductions over short
trailing axes). The result is a flat list of ``M`` fragments (:class:`SparseFragments`), which the
shader consumes as it is (no padding to PyTorch3D's dense ``(B, H, W, K)`` layout). Depth order and the
candidate set are discrete choices with no gradient; ``dist``, ``bary``,
``bary_clipped`` and ``zbuf`` are differentiable w.r.t. the vertex positions and the camera (``K`` and
``cam_from_world``).

CPU notes: on a busy machine, one intra-op thread (``torch.set_num_threads(1)``) is much faster than
several, and ``GLIBC_TUNABLES=glibc.malloc.trim_threshold=4294967296:glibc.malloc.mmap_threshold=33554432``
avoids re-faulting the pages of every large temporary.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from runner.errors import NonFiniteError
from runner.geometry.cameras import PinholeCamera
from runner.geometry.meshes import Meshes

COVERAGE_EPS = 1e-4  # coverage below which a face is not a candidate of a pixel (SoftRas / PyTorch3D)
# Faces with |twice the signed screen area| <= this [NDC^2] are degenerate and skipped (PyTorch3D's test,
# kEpsilon = 1e-8). Screen barycentrics divide by that area: a sliver whose area rounds to zero in float32
# would otherwise give NaN barycentrics and, through them, NaN vertex gradients.
_MIN_AREA2_NDC = 1e-8


def blur_radius(sigma: float, eps: float = COVERAGE_EPS) -> float:
    """Squared NDC distance beyond which ``sigmoid(-dist / sigma) < eps``: ``sigma * ln(1 / eps - 1)``."""
    return sigma * math.log(1.0 / eps - 1.0)


@dataclass(frozen=True)
class SparseFragments:
    """The (pixel, face) pairs of one rasterisation pass, in no particular order.

    Attributes:
        pix: (M,) int64 flat pixel index ``b * H * W + i * W + j``.
        face: (M,) int64 index into the packed faces.
        bary: (M, 3) perspective-correct barycentrics of the pixel centre (unclipped).
        bary_clipped: (M, 3) barycentrics of the closest point of the face (see the module docstring).
        zbuf: (M,) camera-space depth of the face at the pixel [scene units], > znear.
        dist: (M,) signed squared distance [NDC units^2], negative inside the face.
        batch_size: B.
        image_size: (H, W).
    """

    pix: Tensor
    face: Tensor
    bary: Tensor
    bary_clipped: Tensor
    zbuf: Tensor
    dist: Tensor
    batch_size: int
    image_size: tuple[int, int]

    @property
    def num_pixels(self) -> int:
        """B * H * W."""
        return self.batch_size * self.image_size[0] * self.image_size[1]


def depth_order(pix: Tensor, zbuf: Tensor) -> Tensor:
    """Permutation (M,) sorting fragments by pixel, then depth, then their current position (stable)."""
    by_depth = torch.argsort(zbuf, stable=True)
    return by_depth[torch.argsort(pix[by_depth], stable=True)]


def rank_in_pixel(pix_sorted: Tensor, num_pixels: int) -> Tensor:
    """(M,) position of each fragment within its pixel's run, for ``pix_sorted`` sorted ascending."""
    counts = torch.bincount(pix_sorted, minlength=num_pixels)
    first = torch.cumsum(counts, 0) - counts
    return torch.arange(pix_sorted.shape[0], device=pix_sorted.device) - first[pix_sorted]


def project_faces(meshes: Meshes, cameras: PinholeCamera, znear: float) -> tuple[Tensor, Tensor, Tensor]:
    """Project every packed face with the camera of its mesh.

    Args:
        meshes: B meshes; mesh b is seen by camera b.
        cameras: B cameras.
        znear: near plane [scene units]; faces with a vertex at ``z <= znear`` are flagged invalid.
    Returns:
        face_uv (F, 3, 2) vertex pixel coordinates (u, v), face_z (F, 3) vertex camera depths
        [scene units] (1 at invalid vertices, so that divisions stay finite), and valid (F,) bool.
    """
    verts = meshes.verts_packed
    if not bool(torch.isfinite(verts.detach()).all()):  # NaN z is never "in front": it would vanish silently
        raise NonFiniteError("non-finite mesh vertex in the soft rasteriser: the fitted vertices became NaN/Inf")
    v2m = meshes.vert_to_mesh
    pose = cameras.cam_from_world[v2m]  # (V, 4, 4)
    points_cam = (pose[:, :3, :3] @ verts[:, :, None]).squeeze(-1) + pose[:, :3, 3]
    z = points_cam[:, 2]
    in_front = z > znear
    z_safe = torch.where(in_front, z, torch.ones_like(z))
    K = cameras.K[v2m]
    u = K[:, 0, 0] * points_cam[:, 0] / z_safe + K[:, 0, 2]
    v = K[:, 1, 1] * points_cam[:, 1] / z_safe + K[:, 1, 2]
    faces = meshes.faces_packed
    face_uv = torch.stack([u, v], -1)[faces]
    return face_uv, z_safe[faces], in_front[faces].all(-1)


def rasterize(face_uv: Tensor, face_z: Tensor, valid: Tensor, face_to_image: Tensor, batch_size: int,
              image_size: tuple[int, int], blur_radius: float, faces_per_pixel: int, cull_backfaces: bool = False,
              max_pairs: int = 2**18) -> SparseFragments:
    """Rasterise projected faces into the fragments of their images (see the module docstring).

    Args:
        face_uv: (F, 3, 2) vertex pixel coordinates (u, v) of each face.
        face_z: (F, 3) vertex camera depths [scene units], > 0 for valid faces.
        valid: (F,) bool, False for faces to skip (behind the near plane).
        face_to_image: (F,) int64 image index in [0, B) of each face.
        batch_size: B.
        image_size: (H, W) in pixels.
        blur_radius: squared NDC distance within which an outside pixel is a candidate, >= 0.
        faces_per_pixel: K >= 1, nearest candidates kept per pixel.
        cull_backfaces: skip faces whose vertices appear clockwise in the image, i.e. faces seen from
            behind when faces are counter-clockwise seen from outside.
        max_pairs: candidate (pixel, face) pairs tested at once, and fragments per recomputed chunk of the
            backward pass; bounds the memory of both.
    Returns:
        :class:`SparseFragments`, differentiable w.r.t. ``face_uv`` and ``face_z``.
    """
    if face_uv.dim() != 3 or face_uv.shape[1:] != (3, 2):
        raise ValueError(f"face_uv must be (F, 3, 2), got {tuple(face_uv.shape)}")
    if face_z.shape != face_uv.shape[:2]:
        raise ValueError(f"face_z must be (F, 3) = {tuple(face_uv.shape[:2])}, got {tuple(face_z.shape)}")
    if blur_radius < 0 or faces_per_pixel < 1 or max_pairs < 1:
        raise ValueError(f"need blur_radius >= 0, faces_per_pixel >= 1, max_pairs >= 1; got {blur_radius}, "
                         f"{faces_per_pixel}, {max_pairs}")
    H, W = image_size
    ndc_per_px = 2.0 / min(H, W)
    blur_px2 = blur_radius / ndc_per_px**2
    u, v = face_uv.unbind(-1)
    with torch.no_grad():
        _check_finite_faces(face_uv, face_z, valid)
        pix, face, zbuf = _candidates(u.detach(), v.detach(), face_z.detach(), valid, face_to_image, H, W,
                                      blur_px2, _MIN_AREA2_NDC / ndc_per_px**2, cull_backfaces, max_pairs)
        keep = _nearest_k(pix, zbuf, batch_size * H * W, faces_per_pixel)
        if keep is not None:
            pix, face = pix.index_select(0, keep), face.index_select(0, keep)
    col = (pix % W).to(face_uv.dtype)
    row = ((pix // W) % H).to(face_uv.dtype)
    corners = [x[:, k].index_select(0, face) for k in range(3) for x in (u, v)]
    z = [face_z[:, k].index_select(0, face) for k in range(3)]
    inputs = [col, row, *corners, *z]
    if pix.shape[0] <= max_pairs:
        dist, bary, bary_clipped, zbuf = _fragment_values(*inputs)
    else:  # chunks recomputed in the backward pass instead of keeping ~50 intermediate tensors each alive
        parts = [_Recomputed.apply(*chunk) for chunk in zip(*[x.split(max_pairs) for x in inputs])]
        dist, bary, bary_clipped, zbuf = (torch.cat(p) for p in zip(*parts))
    return SparseFragments(pix, face, bary, bary_clipped, zbuf, dist * ndc_per_px**2, batch_size, (H, W))


class _Recomputed(torch.autograd.Function):
    """:func:`_fragment_values` that saves only its inputs and recomputes the rest in the backward pass.

    Gradient checkpointing (Chen et al., "Training deep nets with sublinear memory cost", 2016), written
    out because ``torch.utils.checkpoint`` imports ``torch._dynamo`` on first use (seconds of start-up).
    """

    @staticmethod
    def forward(ctx, *inputs: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        ctx.save_for_backward(*inputs)
        return _fragment_values(*inputs)

    @staticmethod
    def backward(ctx, *grad_outputs: Tensor) -> tuple[Tensor | None, ...]:
        inputs = [x.detach().requires_grad_(need) for x, need in zip(ctx.saved_tensors, ctx.needs_input_grad)]
        wanted = [x for x in inputs if x.requires_grad]
        with torch.enable_grad():
            outputs = _fragment_values(*inputs)
        grads = iter(torch.autograd.grad(outputs, wanted, grad_outputs, allow_unused=True))
        return tuple(next(grads) if x.requires_grad else None for x in inputs)


def _fragment_values(col: Tensor, row: Tensor, ax: Tensor, ay: Tensor, bx: Tensor, by: Tensor, cx: Tensor,
                     cy: Tensor, za: Tensor, zb: Tensor, zc: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Signed squared distance [pixels^2], bary (M, 3), bary_clipped (M, 3) and zbuf (M,) of fragments."""
    dist_px2, inside, l = _pair_geometry(col, row, ax, ay, bx, by, cx, cy)
    z = (za, zb, zc)
    q = [l[k] / z[k] for k in range(3)]
    norm = _guard(q[0] + q[1] + q[2])
    bary = torch.stack([qk / norm for qk in q], -1)
    lc = [lk.clamp(min=0) for lk in l]
    qc = [lc[k] / z[k] for k in range(3)]
    inv_z = qc[0] + qc[1] + qc[2]
    bary_clipped = torch.stack([qk / inv_z for qk in qc], -1)
    zbuf = (lc[0] + lc[1] + lc[2]) / inv_z
    return torch.where(inside, -dist_px2, dist_px2), bary, bary_clipped, zbuf


def _guard(x: Tensor, tiny: float = 1e-12) -> Tensor:
    """x with magnitudes below ``tiny`` replaced by +tiny (a sign-preserving safe denominator)."""
    return torch.where(x.abs() < tiny, torch.full_like(x, tiny), x)


def _pair_geometry(px: Tensor, py: Tensor, ax: Tensor, ay: Tensor, bx: Tensor, by: Tensor, cx: Tensor,
                   cy: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Squared distance to the boundary, insideness and screen barycentrics of points in triangles.

    All arguments are (M,) coordinates [pixels] of the points p and of the triangles' vertices a, b, c
    (either orientation, non-degenerate). Components are separate 1-D tensors because elementwise
    kernels on them are an order of magnitude faster on a CPU than reductions over a trailing axis of 2.

    Returns:
        dist (M,) squared distance to the nearest edge [pixels^2], inside (M,) bool (all barycentrics
        >= 0), and the screen-space barycentrics [l_a, l_b, l_c], each (M,), summing to 1.
    """
    dist = None
    cross = []
    for x0, y0, x1, y1 in ((ax, ay, bx, by), (bx, by, cx, cy), (cx, cy, ax, ay)):
        ex, ey = x1 - x0, y1 - y0
        wx, wy = px - x0, py - y0
        cross.append(ex * wy - ey * wx)  # edge function, proportional to the opposite barycentric
        t = ((wx * ex + wy * ey) / (ex * ex + ey * ey)).clamp(0.0, 1.0)
        dx, dy = wx - t * ex, wy - t * ey
        d = dx * dx + dy * dy
        dist = d if dist is None else torch.minimum(dist, d)
    # Twice the signed area from the vertices alone, bit for bit the value _candidates tested against
    # the degeneracy threshold (the sum of the three edge functions is the same number in exact arithmetic
    # but can round to zero for a sliver).
    area2 = _twice_signed_area(ax, ay, bx, by, cx, cy)
    l = [cross[1] / area2, cross[2] / area2, cross[0] / area2]
    inside = (l[0] >= 0) & (l[1] >= 0) & (l[2] >= 0)
    return dist, inside, l


def _check_finite_faces(face_uv: Tensor, face_z: Tensor, valid: Tensor) -> None:
    """Raise :class:`NonFiniteError` when a face to draw has a NaN/Inf vertex.

    Its bounding box would be cast to garbage pixel indices (and a run of a diverged fit would ask for
    an enormous allocation or index out of range instead of stopping with the loop's non-finite error).

    Args:
        face_uv: (F, 3, 2) vertex pixel coordinates; face_z: (F, 3) depths; valid: (F,) faces to draw.
    """
    finite = torch.isfinite(face_uv).all(dim=(1, 2)) & torch.isfinite(face_z).all(dim=1)
    if not bool((finite | ~valid).all()):
        raise NonFiniteError("non-finite projected vertex in the soft rasteriser: a camera became NaN/Inf")


def _twice_signed_area(ax: Tensor, ay: Tensor, bx: Tensor, by: Tensor, cx: Tensor, cy: Tensor) -> Tensor:
    """Twice the signed area of triangles abc from their (M,) vertex coordinates [pixels^2]."""
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


def _candidates(u: Tensor, v: Tensor, z: Tensor, valid: Tensor, face_to_image: Tensor, H: int, W: int,
                blur_px2: float, min_area2_px: float, cull_backfaces: bool,
                max_pairs: int) -> tuple[Tensor, Tensor, Tensor]:
    """(pixel, face) pairs whose pixel centre is inside the face or within the blur radius of it.

    Every face enumerates the pixel centres of its bounding box grown by the blur radius, row by row, in
    chunks of faces holding about ``max_pairs`` pairs (a single larger face is one chunk).

    Args:
        u, v: (F, 3) vertex pixel coordinates; z: (F, 3) vertex depths.
        min_area2_px: faces with |twice the signed area| at or below this [pixels^2] are skipped.
    Returns:
        pix (P,), face (P,) in ascending face order, and zbuf (P,) the clipped-barycentric depth.
    """
    area2 = _twice_signed_area(u[:, 0], v[:, 0], u[:, 1], v[:, 1], u[:, 2], v[:, 2])
    keep = valid & (area2.abs() > min_area2_px)
    if cull_backfaces:
        keep &= area2 < 0  # counter-clockwise from outside = clockwise in the v-down image
    reach = math.sqrt(blur_px2)
    x0 = (u.amin(1) - reach).ceil().clamp(0, W).long()  # both sides clamped: huge coordinates stay in int64
    y0 = (v.amin(1) - reach).ceil().clamp(0, H).long()
    x1 = (u.amax(1) + reach).floor().clamp(-1, W - 1).long()
    y1 = (v.amax(1) + reach).floor().clamp(-1, H - 1).long()
    nx, ny = (x1 - x0 + 1).clamp(min=0), (y1 - y0 + 1).clamp(min=0)
    ids = torch.nonzero(keep & (nx > 0) & (ny > 0)).squeeze(1)
    nx, ny, x0, y0 = nx[ids], ny[ids], x0[ids], y0[ids]
    count = nx * ny
    first = torch.cumsum(count, 0) - count
    faces_per_chunk = torch.bincount(first // max_pairs).tolist() if len(ids) else []
    bounds = [0, *itertools.accumulate(n for n in faces_per_chunk if n > 0)]
    corners = [x[:, k].contiguous() for k in range(3) for x in (u, v)]
    zs = [z[:, k].contiguous() for k in range(3)]
    out_pix, out_face, out_z = [], [], []
    for s, e in zip(bounds[:-1], bounds[1:]):
        # rows: one entry per (face, row) of the chunk; pairs: one per (face, row, column)
        row_face = torch.repeat_interleave(ny[s:e]) + s
        row = _local_index(ny[s:e]) + y0.index_select(0, row_face)
        row_len = nx.index_select(0, row_face)
        pair_row = torch.repeat_interleave(row_len)
        pair_face = row_face.index_select(0, pair_row)
        col = _local_index(row_len) + x0.index_select(0, pair_face)
        row = row.index_select(0, pair_row)
        f = ids.index_select(0, pair_face)
        dist, inside, l = _pair_geometry(col.to(u.dtype), row.to(u.dtype),
                                         *[c.index_select(0, f) for c in corners])
        hit = torch.nonzero(inside | (dist <= blur_px2)).squeeze(1)
        f = f.index_select(0, hit)
        lc = [lk.index_select(0, hit).clamp_(min=0) for lk in l]
        inv_z = sum(lc[k] / zs[k].index_select(0, f) for k in range(3))
        out_z.append((lc[0] + lc[1] + lc[2]) / inv_z)
        image = face_to_image.index_select(0, f)
        out_pix.append((image * H + row.index_select(0, hit)) * W + col.index_select(0, hit))
        out_face.append(f)
    if not out_pix:
        empty = torch.zeros(0, dtype=torch.int64, device=u.device)
        return empty, empty.clone(), u.new_zeros(0)
    return torch.cat(out_pix), torch.cat(out_face), torch.cat(out_z)


def _local_index(counts: Tensor) -> Tensor:
    """(sum counts,) position of each element within its group, for groups of the given sizes."""
    first = torch.cumsum(counts, 0) - counts
    return torch.arange(int(first[-1] + counts[-1]) if len(counts) else 0, device=counts.device) - \
        torch.repeat_interleave(first, counts)


def _nearest_k(pix: Tensor, zbuf: Tensor, num_pixels: int, K: int, bins: int = 128) -> Tensor | None:
    """Indices (ascending) of the fragments among the K nearest of their pixel; None if all are.

    A radix select: depths of the pixels with more than K fragments are binned (a monotone map, so
    bins preserve the order); fragments in bins before each pixel's K-th one are kept, those after are
    dropped, and only the fragments in that bin are sorted (by depth, then face index).
    """
    counts = torch.bincount(pix, minlength=num_pixels)
    if pix.shape[0] == 0 or int(counts.max()) <= K:
        return None
    is_crowded = counts > K
    crowded = is_crowded.index_select(0, pix)
    idx = torch.nonzero(crowded).squeeze(1)
    slot = torch.cumsum(is_crowded, 0) - 1  # compact index of each crowded pixel
    cid = slot.index_select(0, pix.index_select(0, idx))
    cz = zbuf.index_select(0, idx)
    lo, hi = cz.min(), cz.max()
    scale = (bins - 1) / (hi - lo).clamp(min=torch.finfo(cz.dtype).tiny)
    b = ((cz - lo) * scale).long().clamp_(0, bins - 1)
    n_crowded = int(is_crowded.sum())
    cum = torch.bincount(cid * bins + b, minlength=n_crowded * bins).reshape(n_crowded, bins).cumsum(1)
    kth_bin = (cum < K).sum(1)  # the bin holding each pixel's K-th nearest fragment
    before = torch.where(kth_bin > 0, cum.gather(1, (kth_bin - 1).clamp(min=0)[:, None]).squeeze(1), 0)
    pb = kth_bin.index_select(0, cid)
    keep = ~crowded
    keep[idx.masked_select(b < pb)] = True
    tie = torch.nonzero(b == pb).squeeze(1)
    tie_cid = cid.index_select(0, tie)
    ranked = tie.index_select(0, depth_order(tie_cid, cz.index_select(0, tie)))
    ranked_cid = cid.index_select(0, ranked)
    rank = rank_in_pixel(ranked_cid, n_crowded)
    keep[idx.index_select(0, ranked.masked_select(rank < (K - before).index_select(0, ranked_cid)))] = True
    return torch.nonzero(keep).squeeze(1)
