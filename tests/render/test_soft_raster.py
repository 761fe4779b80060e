"""The sparse soft rasteriser against a naive every-pixel-against-every-face reference (float64)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from runner.geometry.cameras import PinholeCamera
from runner.geometry.meshes import Meshes
from runner.render.soft_raster import blur_radius, depth_order, project_faces, rank_in_pixel, rasterize


def dense_fragments(frags, K: int):
    """The sparse fragments padded to PyTorch3D's dense (B, H, W, K) layout, each pixel's faces nearest first
    (-1 in pix_to_face, zbuf and dist, 0 in bary where a pixel has fewer than K): the layout of the naive
    reference below."""
    B, (H, W) = frags.batch_size, frags.image_size
    order = depth_order(frags.pix, frags.zbuf.detach())
    rank = rank_in_pixel(frags.pix[order], frags.num_pixels)
    keep = rank < K
    order, rank = order[keep], rank[keep]
    slot = frags.pix[order] * K + rank
    n = frags.num_pixels * K
    pix_to_face = torch.full((n,), -1, dtype=torch.int64)
    pix_to_face[slot] = frags.face[order]
    zbuf = frags.zbuf.new_full((n,), -1.0).index_put((slot,), frags.zbuf[order])
    dist = frags.dist.new_full((n,), -1.0).index_put((slot,), frags.dist[order])
    bary = frags.bary.new_zeros(n, 3).index_put((slot,), frags.bary[order])
    return SimpleNamespace(pix_to_face=pix_to_face.reshape(B, H, W, K), bary=bary.reshape(B, H, W, K, 3),
                           zbuf=zbuf.reshape(B, H, W, K), dist=dist.reshape(B, H, W, K))


def naive_fragments(face_uv, face_z, valid, face_to_image, B, image_size, blur, K, cull_backfaces=False):
    """Every pixel against every face, K nearest by clipped-barycentric depth (ties: lower face index).

    Returns dense (B, H, W, K) pix_to_face, bary (unclipped, perspective-correct), zbuf and signed dist
    [NDC^2], padded like PyTorch3D (-1, 0, -1, -1).
    """
    H, W = image_size
    s = 2.0 / min(H, W)
    rows, cols = torch.meshgrid(torch.arange(H, dtype=face_uv.dtype), torch.arange(W, dtype=face_uv.dtype),
                                indexing="ij")
    p = torch.stack([cols, rows], -1).reshape(-1, 1, 2)  # (P, 1, 2)
    a, b, c = face_uv[:, 0], face_uv[:, 1], face_uv[:, 2]  # (F, 2)

    def cross2(x, y):
        return x[..., 0] * y[..., 1] - x[..., 1] * y[..., 0]

    area = cross2(b - a, c - a)  # (F,)
    la = cross2(c - b, p - b) / area
    lb = cross2(a - c, p - c) / area
    lc = cross2(b - a, p - a) / area
    l = torch.stack([la, lb, lc], -1)  # (P, F, 3)
    inside = (l >= 0).all(-1)

    def seg_dist2(x, y):
        e = y - x
        t = (((p - x) * e).sum(-1) / (e * e).sum(-1)).clamp(0, 1)
        return ((p - x - t[..., None] * e) ** 2).sum(-1)

    d2 = torch.minimum(torch.minimum(seg_dist2(a, b), seg_dist2(b, c)), seg_dist2(c, a)) * s * s
    lcl = l.clamp(min=0)
    zbuf = lcl.sum(-1) / (lcl / face_z).sum(-1)
    q = l / face_z
    bary = q / q.sum(-1, keepdim=True)
    ok = valid & (area.abs() * s * s > 1e-8)  # degenerate faces skipped as in PyTorch3D
    if cull_backfaces:
        ok = ok & (area < 0)
    out = []
    for img in range(B):
        cand = ok & (face_to_image == img) & (inside | (d2 <= blur))  # (P, F)
        key = torch.where(cand, zbuf, torch.full_like(zbuf, math.inf))
        order = torch.sort(key, dim=1, stable=True).indices[:, :K]  # ties keep face order
        sel = cand.gather(1, order)
        pf = torch.where(sel, order, -1)
        z = torch.where(sel, zbuf.gather(1, order), -1.0)
        dd = torch.where(sel, torch.where(inside, -d2, d2).gather(1, order), -1.0)
        bb = torch.where(sel[..., None], bary.gather(1, order[..., None].expand(-1, -1, 3)), 0.0)
        Kr = pf.shape[1]
        pad = K - Kr
        if pad > 0:
            pf = torch.cat([pf, pf.new_full((pf.shape[0], pad), -1)], 1)
            z = torch.cat([z, z.new_full((z.shape[0], pad), -1.0)], 1)
            dd = torch.cat([dd, dd.new_full((dd.shape[0], pad), -1.0)], 1)
            bb = torch.cat([bb, bb.new_zeros(bb.shape[0], pad, 3)], 1)
        out.append((pf.reshape(H, W, K), bb.reshape(H, W, K, 3), z.reshape(H, W, K), dd.reshape(H, W, K)))
    return [torch.stack(x) for x in zip(*out)]


def random_scene(seed, n_faces=6, B=2, size=(10, 12)):
    """B random meshes of triangles in front of B cameras, float64 with gradients on the vertices."""
    g = torch.Generator().manual_seed(seed)
    verts, faces = [], []
    for _ in range(B):
        v = torch.rand(n_faces * 3, 3, generator=g, dtype=torch.float64) * 2 - 1
        v[:, 2] = v[:, 2] * 0.5 + 3.0
        verts.append(v.requires_grad_(True))
        faces.append(torch.arange(n_faces * 3).reshape(n_faces, 3))
    K = PinholeCamera.intrinsics(12.0, 13.0, 5.5, 4.5, B, dtype=torch.float64)
    pose = torch.eye(4, dtype=torch.float64).expand(B, 4, 4).clone()
    pose[:, 2, 3] = torch.tensor([0.0, 0.3][:B], dtype=torch.float64)
    return Meshes(verts, faces), PinholeCamera(K, pose.requires_grad_(True), size)


def run_both(meshes, cams, sigma, K, cull=False, max_pairs=2**21):
    uv, z, valid = project_faces(meshes, cams, 0.1)
    blur = blur_radius(sigma)
    sparse = rasterize(uv, z, valid, meshes.face_to_mesh, len(meshes), cams.image_size, blur, K, cull, max_pairs)
    dense = dense_fragments(sparse, K)
    ref = naive_fragments(uv, z, valid, meshes.face_to_mesh, len(meshes), cams.image_size, blur, K, cull)
    return dense, ref


@pytest.mark.parametrize("seed,sigma,K,cull", [(0, 1e-2, 3, False), (1, 3e-2, 2, True), (2, 1e-3, 8, False),
                                               (3, 5e-2, 1, False)])
def test_sparse_equals_naive_forward(seed, sigma, K, cull):
    meshes, cams = random_scene(seed)
    dense, (pf, bary, zbuf, dist) = run_both(meshes, cams, sigma, K, cull, max_pairs=37)  # many chunks
    assert torch.equal(dense.pix_to_face, pf)
    assert (pf >= 0).sum() > 20  # the scene is not empty
    torch.testing.assert_close(dense.zbuf, zbuf)
    torch.testing.assert_close(dense.dist, dist)
    torch.testing.assert_close(dense.bary, bary)


def test_crowded_pixels_keep_the_k_nearest():
    """Many overlapping faces: the radix select keeps exactly the K nearest, like a full sort."""
    meshes, cams = random_scene(4, n_faces=40, B=1)
    dense, (pf, *_rest) = run_both(meshes, cams, 2e-2, 5)
    assert (pf >= 0).all(-1).sum() > 10  # some pixels are full
    assert torch.equal(dense.pix_to_face, pf)


@pytest.mark.parametrize("max_pairs", [2**21, 7])  # plain autograd; chunks recomputed in the backward pass
def test_sparse_equals_naive_backward(max_pairs):
    meshes, cams = random_scene(5)
    dense, (pf, bary, zbuf, dist) = run_both(meshes, cams, 2e-2, 4, max_pairs=max_pairs)
    w = torch.randn_like(dense.dist, generator=torch.Generator().manual_seed(0))
    mask = pf >= 0

    def loss(d, z, b):
        return (d * w)[mask].sum() + (z * w)[mask].sum() + (b.sum(-1) * w + b[..., 0])[mask].sum()

    grads = torch.autograd.grad(loss(dense.dist, dense.zbuf, dense.bary), [*meshes.verts, cams.cam_from_world],
                                retain_graph=True)  # the projection is shared with the reference
    grads_ref = torch.autograd.grad(loss(dist, zbuf, bary), [*meshes.verts, cams.cam_from_world])
    for g, r in zip(grads, grads_ref):
        assert r.abs().sum() > 0
        torch.testing.assert_close(g, r)


def test_empty_and_offscreen():
    meshes, cams = random_scene(6, B=1)
    far = meshes.with_verts([meshes.verts[0].detach() + torch.tensor([100.0, 0.0, 0.0], dtype=torch.float64)])
    uv, z, valid = project_faces(far, cams, 0.1)
    frag = rasterize(uv, z, valid, far.face_to_mesh, 1, cams.image_size, 1e-3, 4)
    assert frag.pix.numel() == 0 and (dense_fragments(frag, 4).pix_to_face == -1).all()


def test_faces_behind_near_plane_are_culled():
    meshes, cams = random_scene(7, B=1)
    behind = meshes.with_verts([meshes.verts[0].detach() * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)])
    uv, z, valid = project_faces(behind, cams, 0.1)
    assert not valid.any()
    assert rasterize(uv, z, valid, behind.face_to_mesh, 1, cams.image_size, 1e-3, 4).pix.numel() == 0


def test_sliver_faces_give_finite_gradients():
    """A near-collinear face (seen in a learned single_view_recon run): its edge functions sum to zero in
    float32 although its area does not, which gave NaN barycentrics and NaN vertex gradients."""
    sliver = torch.tensor([[[20.190632, 9.851681], [23.645262, 9.257713], [21.939556, 9.5509815]]])  # from the run
    fat = torch.tensor([[[4.0, 4.0], [12.0, 20.0], [20.0, 6.0]]])
    uv = torch.cat([sliver, fat]).requires_grad_(True)
    z = torch.tensor([[2.66, 2.70, 2.68], [2.5, 2.5, 2.5]], requires_grad=True)
    valid, to_image = torch.ones(2, dtype=torch.bool), torch.zeros(2, dtype=torch.int64)
    frag = rasterize(uv, z, valid, to_image, 1, (32, 32), blur_radius(3e-3), 8)
    assert frag.pix.numel() > 0 and not (frag.face == 0).any()  # the sliver is skipped as degenerate
    loss = torch.sigmoid(-frag.dist / 3e-3).sum() + frag.bary.sum() + frag.zbuf.sum()
    loss.backward()
    assert torch.isfinite(uv.grad).all() and torch.isfinite(z.grad).all() and uv.grad[1].abs().sum() > 0


def test_bad_arguments():
    uv = torch.zeros(2, 3, 2)
    with pytest.raises(ValueError, match="face_z must be"):
        rasterize(uv, torch.ones(2, 2), torch.ones(2, dtype=torch.bool), torch.zeros(2, dtype=torch.long), 1,
                  (4, 4), 0.0, 1)
    with pytest.raises(ValueError, match="faces_per_pixel"):
        rasterize(uv, torch.ones(2, 3), torch.ones(2, dtype=torch.bool), torch.zeros(2, dtype=torch.long), 1,
                  (4, 4), 0.0, 0)
