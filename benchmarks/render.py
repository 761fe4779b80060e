"""Speed and memory of the soft_mesh renderer (and PyTorch3D's, where it imports).

For icosphere levels 3, 4, 5 at 64, 128, 256 px, batch 1 and 4, and the 100k-face armadillo at 256 px,
in soft silhouette mode (``shading="silhouette"``, loss ``alpha.sum()``) and soft RGB mode (Phong, loss
``rgb.sum()``), with K = 50 and sigma = gamma = 1e-4, it prints the median over ``--repeats`` runs (after
two warm-up runs) of the forward time (autograd recording, as in training) and of forward + backward
w.r.t. the vertices, and the peak resident memory of the process during the configuration (Linux VmHWM,
reset before each configuration through /proc/self/clear_refs; it includes Python, torch and memory the
allocator kept from earlier configurations, so it is an upper bound of the renderer's own peak).

    python benchmarks/render.py [--quick] [--json] [--repeats 7] [--threads 2]
    GLIBC_TUNABLES=glibc.malloc.trim_threshold=4294967296:glibc.malloc.mmap_threshold=33554432 \\
        python benchmarks/render.py

The tunables keep freed memory in the heap instead of returning it to the kernel; without them every
large temporary is a fresh mmap whose pages are faulted in again, which costs a lot in a VM.
``--quick`` runs icosphere level 4 at 128 px only. Targets on a 2-core CPU: level 4 at 128 px silhouette
forward + backward <= 100 ms; armadillo at 256 px <= 1 s.

Where PyTorch3D imports (it does not install from PyPI; build it from source and put it on PYTHONPATH),
silhouette rows also time PyTorch3D's soft silhouette on the same scene and print the agreement: IoU of
the alpha maps thresholded at 0.5, their largest difference, and the relative difference of the vertex
gradients. The cameras are handed over with the principal point moved by half a pixel, because
``cameras_from_opencv_projection`` puts pixel centres at half-integers and dwx (like OpenCV) at integers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.geometry.cameras import PinholeCamera  # noqa: E402
from runner.geometry.mesh_io import load_obj  # noqa: E402
from runner.geometry.meshes import Meshes  # noqa: E402
from runner.geometry.primitives import icosphere  # noqa: E402
from runner.render.soft_mesh import SoftMeshRenderer  # noqa: E402
from runner.render.soft_raster import blur_radius  # noqa: E402

ARMADILLO = ROOT.parent / "shared" / "data" / "meshes" / "armadillo.obj"
SIGMA, K = 1e-4, 50
# PyTorch3D 0.7.9 soft silhouette forward + backward [ms], reference figures measured earlier on this machine.
P3D_REFERENCE_MS = {("icosphere4", 128, 1): 12700.0, ("icosphere3", 128, 1): 5000.0, ("icosphere3", 64, 1): 1500.0}


def scene(verts: torch.Tensor, faces: torch.Tensor, size: int, batch: int, distance: float):
    """B copies of a mesh (vertices requiring grad) seen from B azimuths, 60 degree field of view."""
    verts = verts.detach().clone().requires_grad_(True)
    meshes = Meshes([verts] * batch, [faces] * batch)
    poses = PinholeCamera.orbit(torch.full((batch,), 15.0), torch.linspace(0.0, 270.0, batch), distance)
    cams = PinholeCamera(PinholeCamera.intrinsics_from_fov(60.0, (size, size), batch), poses, (size, size))
    return verts, meshes, cams


def peak_reset() -> None:
    """Reset the process's peak RSS to its current RSS (Linux; elsewhere the peak is since start-up)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def timed(fn, repeats: int) -> float:
    """Median wall time [ms] of ``fn()`` over ``repeats`` runs after two warm-up runs."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def measure(renderer, verts, meshes, cams, mode: str, repeats: int) -> dict:
    def forward():
        out = renderer(meshes, cams)
        return out.alpha if mode == "silhouette" else out.rgb

    def forward_backward():
        verts.grad = None
        forward().sum().backward()

    peak_reset()
    fwd = timed(forward, repeats)
    fwd_bwd = timed(forward_backward, repeats)
    peak_mb = _status_kb("VmHWM") / 1024
    return {"fwd_ms": round(fwd, 1), "fwd_bwd_ms": round(fwd_bwd, 1), "peak_mb": round(peak_mb, 1)}


def pytorch3d_silhouette(meshes: Meshes, cams: PinholeCamera):
    """A PyTorch3D soft-silhouette renderer for the same scene, or None when PyTorch3D does not import."""
    try:
        from pytorch3d.renderer import (
            BlendParams,
            MeshRasterizer,
            MeshRenderer,
            RasterizationSettings,
            SoftSilhouetteShader,
        )
        from pytorch3d.structures import Meshes as P3DMeshes
        from pytorch3d.utils import cameras_from_opencv_projection
    except ImportError:
        return None
    H, W = cams.image_size
    # cameras_from_opencv_projection puts pixel (i, j)'s centre at (u, v) = (j + 0.5, i + 0.5); dwx (and
    # OpenCV) at (j, i). Moving the principal point by half a pixel makes both sample the same rays.
    K_p3d = cams.K.clone()
    K_p3d[:, :2, 2] += 0.5
    p3d_cams = cameras_from_opencv_projection(cams.cam_from_world[:, :3, :3], cams.cam_from_world[:, :3, 3], K_p3d,
                                              torch.tensor([[H, W]] * cams.batch_size))
    settings = RasterizationSettings(image_size=(H, W), blur_radius=blur_radius(SIGMA), faces_per_pixel=K)
    renderer = MeshRenderer(MeshRasterizer(cameras=p3d_cams, raster_settings=settings),
                            SoftSilhouetteShader(blend_params=BlendParams(sigma=SIGMA, gamma=SIGMA)))
    p3d_meshes = P3DMeshes(meshes.verts, meshes.faces)
    return lambda: renderer(p3d_meshes)[..., 3]


def agreement(ours, theirs, verts: torch.Tensor) -> dict:
    """Silhouette and gradient agreement of two alpha renderers of the same scene.

    ``alpha_iou``: IoU of the alpha maps thresholded at 0.5; ``max_alpha_diff``: largest per-pixel
    difference; ``grad_rel_diff``: ``|g_ours - g_theirs| / |g_theirs|`` for the vertex gradients of
    ``sum(alpha ** 2)``.
    """
    grads, alphas = [], []
    for render in (ours, theirs):
        verts.grad = None
        alpha = render()
        alpha.pow(2).sum().backward()
        grads.append(verts.grad.clone())
        alphas.append(alpha.detach())
    a, b = alphas[0] > 0.5, alphas[1] > 0.5
    return {"alpha_iou": round(((a & b).sum() / (a | b).sum().clamp(min=1)).item(), 4),
            "max_alpha_diff": float(f"{(alphas[0] - alphas[1]).abs().max().item():.2e}"),
            "grad_rel_diff": float(f"{((grads[0] - grads[1]).norm() / grads[1].norm()).item():.2e}")}


def run_case(name: str, verts, faces, size: int, batch: int, distance: float, mode: str, repeats: int) -> dict:
    verts, meshes, cams = scene(verts, faces, size, batch, distance)
    shading = "silhouette" if mode == "silhouette" else "phong"
    renderer = SoftMeshRenderer(sigma=SIGMA, gamma=SIGMA, faces_per_pixel=K, shading=shading)
    row = {"renderer": "soft_mesh", "mesh": name, "faces": int(faces.shape[0]), "image_size": size, "batch": batch,
           "mode": mode, **measure(renderer, verts, meshes, cams, mode, repeats),
           "threads": torch.get_num_threads(), "glibc_tunables": bool(os.environ.get("GLIBC_TUNABLES"))}
    p3d = pytorch3d_silhouette(meshes, cams) if mode == "silhouette" else None
    if p3d is not None:
        def p3d_forward_backward():
            verts.grad = None
            p3d().sum().backward()

        row["p3d_fwd_bwd_ms"] = round(timed(p3d_forward_backward, repeats), 1)
        row.update(agreement(lambda: renderer(meshes, cams).alpha, p3d, verts))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="icosphere level 4 at 128 px only")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per figure (>= 5)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch intra-op threads (default: torch's choice; 1 is faster on a busy machine)")
    args = parser.parse_args()
    if args.repeats < 5 or args.threads < 1:
        parser.error("--repeats must be >= 5 and --threads >= 1")
    torch.set_num_threads(args.threads)

    cases = []  # (name, verts, faces, size, batch, camera distance)
    levels, sizes, batches = ((4,), (128,), (1,)) if args.quick else ((3, 4, 5), (64, 128, 256), (1, 4))
    for level in levels:
        sphere = icosphere(level)
        cases += [(f"icosphere{level}", sphere.verts[0], sphere.faces[0], s, b, 2.7) for s in sizes for b in batches]
    if not args.quick:
        if ARMADILLO.exists():
            start = time.perf_counter()
            arm = load_obj(ARMADILLO, load_textures=False)
            print(f"# armadillo.obj (100k faces) loaded in {time.perf_counter() - start:.2f} s", file=sys.stderr)
            v = arm.verts[0] - arm.verts[0].mean(0)
            cases.append(("armadillo", v / v.norm(dim=1).max(), arm.faces[0], 256, 1, 2.2))
        else:
            print(f"# armadillo skipped: {ARMADILLO} not found", file=sys.stderr)

    if not args.json:
        print(f"# soft_mesh, K={K}, sigma={SIGMA}, {torch.get_num_threads()} threads, GLIBC_TUNABLES="
              f"{os.environ.get('GLIBC_TUNABLES', '(unset)')}; medians of {args.repeats} runs [ms], peak RSS [MB]")
        print(f"{'mesh':>11} {'faces':>6} {'px':>4} {'B':>2} {'mode':>10} {'fwd':>8} {'fwd+bwd':>8} {'peak':>7}  notes")
    for name, verts, faces, size, batch, distance in cases:
        for mode in ("silhouette", "rgb"):
            row = run_case(name, verts, faces, size, batch, distance, mode, args.repeats)
            reference = P3D_REFERENCE_MS.get((name, size, batch)) if mode == "silhouette" else None
            if args.json:
                print(json.dumps(row), flush=True)
                continue
            notes = ""
            if reference is not None:
                notes = (f"PyTorch3D 0.7.9 reference figure (measured earlier on this machine) "
                         f"{reference / 1e3:.1f} s: {reference / row['fwd_bwd_ms']:.0f}x faster")
            if "p3d_fwd_bwd_ms" in row:
                speedup = row["p3d_fwd_bwd_ms"] / row["fwd_bwd_ms"]
                notes += (f" p3d here {row['p3d_fwd_bwd_ms']:.0f} ms ({speedup:.0f}x), "
                          f"alpha IoU {row['alpha_iou']:.4f} (max diff {row['max_alpha_diff']:.1e}), "
                          f"grad rel diff {row['grad_rel_diff']:.1e}")
            print(f"{name:>11} {row['faces']:>6} {size:>4} {batch:>2} {mode:>10} {row['fwd_ms']:>8.1f} "
                  f"{row['fwd_bwd_ms']:>8.1f} {row['peak_mb']:>7.1f}  {notes}", flush=True)


if __name__ == "__main__":
    main()
