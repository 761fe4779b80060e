"""Speed and memory of the soft_mesh renderer, and of PyTorch3D's on the same scenes where it imports.

For each scene (icosphere levels 3, 4, 5 at 64, 128, 256 px, batch 1 and 4, and the 100k-face
armadillo at 256 px) and mode (soft silhouette: ``shading="silhouette"``, loss ``alpha.sum()``; soft
RGB: Phong with one headlight, loss ``rgb.sum()``), with K = 50 and sigma = gamma = 1e-4, it times
each of ``--repeats`` runs (after two warm-up runs) in two parts: the forward pass (autograd recording,
as in training) and the backward pass w.r.t. the vertices. It prints the median and the min-max of the
forward, the backward and their sum per run, and the peak resident memory of the process during the
configuration (Linux VmHWM, reset before each configuration through /proc/self/clear_refs; it includes
Python, torch and memory the allocator kept from earlier configurations, so it is an upper bound of the
renderer's own peak).

    python benchmarks/render.py [--quick] [--repeats 7] [--threads 1] [--malloc both] [--write docs/render.md]

``--threads`` sets torch's intra-op threads (default 1: on a busy 2-core machine two threads made the
same scene swing by an order of magnitude). ``--malloc default`` runs with glibc's malloc settings,
``--malloc tuned`` calls :func:`runner.malloc.tune_malloc` first, as ``dwx run`` does (the same
thresholds as ``GLIBC_TUNABLES=glibc.malloc.trim_threshold=4294967296:glibc.malloc.mmap_threshold=
33554432``); ``--malloc both`` (the default) runs the script once for each, one after the other, in
subprocesses without malloc entries in ``GLIBC_TUNABLES``, and prints both tables. ``--quick`` runs
icosphere level 4 at 128 px and the armadillo only (the scenes the README quotes). ``--write`` also
writes the tables, with the date, the command and :func:`machine.machine_line`, to a markdown file.
Every figure printed is measured in this run; nothing is carried over from earlier runs or other
machines. Targets on a 2-core CPU, one thread: level 4 at 128 px silhouette forward + backward
<= 100 ms; armadillo at 256 px <= 1 s.

Where PyTorch3D imports (it does not install from PyPI; build it from source and put it on PYTHONPATH),
every scene and mode is also rendered by PyTorch3D's ``MeshRenderer`` with ``SoftSilhouetteShader`` or
``SoftPhongShader`` (white vertex colours, the same light, material and blend settings), timed the same
way in the same process, with the ratios PyTorch3D / soft_mesh of the medians and the agreement of the
two images: largest per-pixel difference, for silhouettes also the IoU of the alpha maps thresholded at
0.5, and the relative difference of the vertex gradients of ``sum(image ** 2)``. The cameras are handed
over with the principal point moved by half a pixel, because ``cameras_from_opencv_projection`` puts
pixel centres at half-integers and dwx (like OpenCV) at integers. PyTorch3D's CPU backward is single-
threaded and takes seconds per scene, so a full sweep with it is long; ``--quick`` is the short one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
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
WARMUP = 2
MODES = ("silhouette", "rgb")
NO_PYTORCH3D = "PyTorch3D not importable: no comparison (build it from source and put it on PYTHONPATH)"


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


def spread(times_s: list[float]) -> dict:
    """Median, min and max [ms] of wall times [s]."""
    ms = [1e3 * t for t in times_s]
    return {"median": round(statistics.median(ms), 2), "min": round(min(ms), 2), "max": round(max(ms), 2)}


def measure(render, verts: torch.Tensor, repeats: int) -> dict:
    """Time ``render()`` (forward) and ``render().sum().backward()`` (backward) separately in each run.

    Returns:
        ``fwd_ms``, ``bwd_ms`` and ``fwd_bwd_ms`` (the per-run sums) as :func:`spread` dicts over
        ``repeats`` runs after :data:`WARMUP` runs, and ``peak_mb``, the peak RSS during all of them.
    """
    peak_reset()
    fwd, bwd = [], []
    for i in range(WARMUP + repeats):
        verts.grad = None
        t0 = time.perf_counter()
        loss = render().sum()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if i >= WARMUP:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
    return {
        "fwd_ms": spread(fwd),
        "bwd_ms": spread(bwd),
        "fwd_bwd_ms": spread([f + b for f, b in zip(fwd, bwd)]),
        "peak_mb": round(_status_kb("VmHWM") / 1024, 1),
    }


def pytorch3d_version() -> str | None:
    try:
        import pytorch3d
    except ImportError:
        return None
    return str(getattr(pytorch3d, "__version__", "?"))


def pytorch3d_renderer(meshes: Meshes, cams: PinholeCamera, ours: SoftMeshRenderer, mode: str):
    """``render()`` -> PyTorch3D's image of the same scene (alpha (B, H, W) or rgb (B, H, W, 3)).

    Silhouettes use ``SoftSilhouetteShader``; RGB uses ``SoftPhongShader`` with white vertex colours and
    ``ours``'s directional lights, ambient, specular colour, shininess, background and depth range, so
    that both evaluate the same Phong model and softmax blend (see runner/render/shading.py).
    """
    from pytorch3d.renderer import (
        BlendParams,
        DirectionalLights,
        Materials,
        MeshRasterizer,
        MeshRenderer,
        RasterizationSettings,
        SoftPhongShader,
        SoftSilhouetteShader,
        TexturesVertex,
    )
    from pytorch3d.structures import Meshes as P3DMeshes
    from pytorch3d.utils import cameras_from_opencv_projection

    H, W = cams.image_size
    # cameras_from_opencv_projection puts pixel (i, j)'s centre at (u, v) = (j + 0.5, i + 0.5); dwx (and
    # OpenCV) at (j, i). Moving the principal point by half a pixel makes both sample the same rays.
    K_p3d = cams.K.clone()
    K_p3d[:, :2, 2] += 0.5
    p3d_cams = cameras_from_opencv_projection(
        cams.cam_from_world[:, :3, :3], cams.cam_from_world[:, :3, 3], K_p3d, torch.tensor([[H, W]] * cams.batch_size)
    )
    settings = RasterizationSettings(image_size=(H, W), blur_radius=blur_radius(SIGMA), faces_per_pixel=K)
    blend = BlendParams(sigma=SIGMA, gamma=SIGMA, background_color=ours.background)
    if mode == "silhouette":
        shader = SoftSilhouetteShader(blend_params=blend)
        p3d_meshes = P3DMeshes(meshes.verts, meshes.faces)
    else:
        if len(ours.lights) != 1:
            raise ValueError("the PyTorch3D comparison maps exactly one directional light")
        lamp = ours.lights[0]
        lights = DirectionalLights(
            ambient_color=(ours.ambient,),
            diffuse_color=(tuple(lamp.color),),
            specular_color=(tuple(lamp.color),),
            direction=lamp.world_directions(cams),  # (B, 3) towards the light, world frame, as in PyTorch3D
        )
        materials = Materials(
            ambient_color=((1.0, 1.0, 1.0),),
            diffuse_color=((1.0, 1.0, 1.0),),
            specular_color=(ours.specular,),
            shininess=ours.shininess,
        )
        shader = SoftPhongShader(cameras=p3d_cams, lights=lights, materials=materials, blend_params=blend)
        white = TexturesVertex(verts_features=[torch.ones_like(v, requires_grad=False) for v in meshes.verts])
        p3d_meshes = P3DMeshes(meshes.verts, meshes.faces, textures=white)
    renderer = MeshRenderer(MeshRasterizer(cameras=p3d_cams, raster_settings=settings), shader)

    def render() -> torch.Tensor:
        images = renderer(p3d_meshes, znear=ours.znear, zfar=ours.zfar)
        return images[..., 3] if mode == "silhouette" else images[..., :3]

    return render


def agreement(ours, theirs, verts: torch.Tensor, mode: str) -> dict:
    """Image and gradient agreement of two renderers of the same scene.

    ``max_diff``: largest per-pixel (per-channel) difference; ``alpha_iou`` (silhouettes): IoU of the
    alpha maps thresholded at 0.5; ``grad_rel_diff``: ``|g_ours - g_theirs| / |g_theirs|`` for the vertex
    gradients of ``sum(image ** 2)``.
    """
    grads, images = [], []
    for render in (ours, theirs):
        verts.grad = None
        image = render()
        image.pow(2).sum().backward()
        grads.append(verts.grad.clone())
        images.append(image.detach())
    out = {"max_diff": float(f"{(images[0] - images[1]).abs().max().item():.2e}")}
    if mode == "silhouette":
        a, b = images[0] > 0.5, images[1] > 0.5
        out["alpha_iou"] = round(((a & b).sum() / (a | b).sum().clamp(min=1)).item(), 4)
    out["grad_rel_diff"] = float(f"{((grads[0] - grads[1]).norm() / grads[1].norm()).item():.2e}")
    return out


def run_case(name, verts, faces, size, batch, distance, mode, repeats, p3d_version) -> list[dict]:
    """soft_mesh's row of one scene and mode, and PyTorch3D's (with ratios and agreement) if it imports."""
    verts, meshes, cams = scene(verts, faces, size, batch, distance)
    shading = "silhouette" if mode == "silhouette" else "phong"
    renderer = SoftMeshRenderer(sigma=SIGMA, gamma=SIGMA, faces_per_pixel=K, shading=shading)

    def ours():
        out = renderer(meshes, cams)
        return out.alpha if mode == "silhouette" else out.rgb

    common = {"mesh": name, "faces": int(faces.shape[0]), "image_size": size, "batch": batch, "mode": mode}
    rows = [{"renderer": "soft_mesh", **common, **measure(ours, verts, repeats)}]
    if p3d_version is not None:
        theirs = pytorch3d_renderer(meshes, cams, renderer, mode)
        row = {"renderer": f"PyTorch3D {p3d_version}", **common, **measure(theirs, verts, repeats)}
        row["ratio"] = {
            key: round(row[key]["median"] / rows[0][key]["median"], 1) for key in ("fwd_ms", "bwd_ms", "fwd_bwd_ms")
        }
        row["agreement"] = agreement(ours, theirs, verts, mode)
        rows.append(row)
    return rows


def cases(quick: bool) -> list[tuple]:
    """(name, verts, faces, image size, batch, camera distance) of the scenes to time."""
    out = []
    levels, sizes, batches = ((4,), (128,), (1,)) if quick else ((3, 4, 5), (64, 128, 256), (1, 4))
    for level in levels:
        sphere = icosphere(level)
        out += [(f"icosphere{level}", sphere.verts[0], sphere.faces[0], s, b, 2.7) for s in sizes for b in batches]
    if ARMADILLO.exists():
        start = time.perf_counter()
        arm = load_obj(ARMADILLO, load_textures=False)
        print(f"# armadillo.obj (100k faces) loaded in {time.perf_counter() - start:.2f} s", file=sys.stderr)
        v = arm.verts[0] - arm.verts[0].mean(0)
        out.append(("armadillo", v / v.norm(dim=1).max(), arm.faces[0], 256, 1, 2.2))
    else:
        print(f"# armadillo skipped: {ARMADILLO} not found", file=sys.stderr)
    return out


def malloc_setting(mode: str) -> str:
    """Apply ``--malloc`` in this process and describe the allocator settings in effect."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    user = f"GLIBC_TUNABLES={tunables}" if "glibc.malloc." in tunables else ""
    if mode == "default":
        return user or "glibc defaults"
    from runner.malloc import tune_malloc

    if tune_malloc():
        return "tune_malloc() (trim threshold 2^31-1 B, mmap threshold 32 MiB)"
    return f"tune_malloc() did nothing; {user or 'not glibc'}"


def worker(args) -> None:
    """Measure in this process; print a header object, then one JSON object per row, one a line."""
    setting = malloc_setting(args.malloc)
    torch.set_num_threads(args.threads)
    version = pytorch3d_version()
    header = {"malloc": args.malloc, "setting": setting, "threads": torch.get_num_threads(), "pytorch3d": version}
    print(json.dumps(header), flush=True)
    for name, verts, faces, size, batch, distance in cases(args.quick):
        for mode in MODES:
            for row in run_case(name, verts, faces, size, batch, distance, mode, args.repeats, version):
                print(json.dumps(row), flush=True)


def child_env() -> dict[str, str]:
    """This environment without glibc.malloc entries in GLIBC_TUNABLES, so that --malloc decides alone."""
    env = dict(os.environ)
    kept = [t for t in env.pop("GLIBC_TUNABLES", "").split(":") if t and not t.startswith("glibc.malloc.")]
    if kept:
        env["GLIBC_TUNABLES"] = ":".join(kept)
    return env


def run_child(args, malloc: str) -> tuple[dict, list[dict]]:
    """Run this script with ``--malloc malloc --json`` in a subprocess; its header and rows."""
    cmd = [sys.executable, __file__, "--malloc", malloc, "--json", "--repeats", str(args.repeats)]
    cmd += ["--threads", str(args.threads)] + (["--quick"] if args.quick else [])
    proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(json.loads(line))
        row = lines[-1]
        if "renderer" in row:
            print(
                f"# {malloc}: {row['renderer']} {row['mesh']} {row['image_size']} px B={row['batch']} {row['mode']}: "
                f"fwd+bwd {row['fwd_bwd_ms']['median']:.1f} ms",
                file=sys.stderr,
                flush=True,
            )
    if proc.wait() != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    return lines[0], lines[1:]


def cell(s: dict) -> str:
    """``median (min-max)`` [ms], with precision to match the size."""
    fmt = (lambda x: f"{x:.1f}") if s["max"] < 1000 else (lambda x: f"{x:.0f}")
    return f"{fmt(s['median'])} ({fmt(s['min'])}-{fmt(s['max'])})"


def table(header: dict, rows: list[dict], repeats: int) -> list[str]:
    """Markdown section of one run: settings line, table, and the PyTorch3D line or its absence."""
    lines = [
        f"### malloc {header['malloc']}: {header['setting']}; {header['threads']} torch thread(s)",
        "",
        f"Median (min-max) of {repeats} runs after {WARMUP} warm-up runs [ms]; peak RSS of the process [MB].",
        "",
        "| mesh | faces | px | B | mode | renderer | forward | backward | forward + backward | peak RSS |",
        "| --- | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['mesh']} | {r['faces']} | {r['image_size']} | {r['batch']} | {r['mode']} | {r['renderer']} | "
            f"{cell(r['fwd_ms'])} | {cell(r['bwd_ms'])} | {cell(r['fwd_bwd_ms'])} | {r['peak_mb']:.0f} |"
        )
    lines.append("")
    compared = [r for r in rows if "ratio" in r]
    if header["pytorch3d"] is None:
        lines.append(NO_PYTORCH3D + ".")
    else:
        lines += [
            f"PyTorch3D {header['pytorch3d']} / soft_mesh, medians of this run, and agreement of the two:",
            "",
            "| mesh | px | B | mode | forward | backward | forward + backward | max image diff | alpha IoU | "
            "grad rel diff |",
            "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in compared:
            x, a = r["ratio"], r["agreement"]
            lines.append(
                f"| {r['mesh']} | {r['image_size']} | {r['batch']} | {r['mode']} | {x['fwd_ms']}x | {x['bwd_ms']}x | "
                f"{x['fwd_bwd_ms']}x | {a['max_diff']:.1e} | {a.get('alpha_iou', '-')} | {a['grad_rel_diff']:.1e} |"
            )
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="icosphere level 4 at 128 px and the armadillo only")
    parser.add_argument("--json", action="store_true", help="one JSON object per line (not with --malloc both)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per figure (>= 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument(
        "--malloc",
        choices=("default", "tuned", "both"),
        default="both",
        help="glibc's malloc settings, runner.malloc.tune_malloc(), or both in turn in subprocesses (default)",
    )
    parser.add_argument("--write", type=Path, help="also write the tables, with date, command and machine, here")
    args = parser.parse_args()
    if args.repeats < 5 or args.threads < 1:
        parser.error("--repeats must be >= 5 and --threads >= 1")
    if args.json and (args.malloc == "both" or args.write):
        parser.error("--json needs --malloc default or tuned, and no --write")
    if args.json:
        worker(args)
        return

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import machine_line, write_report

    started = time.strftime("%Y-%m-%d %H:%M")
    machine = machine_line()
    t0 = time.perf_counter()
    runs = [run_child(args, m) for m in (("default", "tuned") if args.malloc == "both" else (args.malloc,))]
    minutes = (time.perf_counter() - t0) / 60
    lines = [
        f"# soft_mesh render speed and memory ({started})",
        "",
        f"K = {K}, sigma = gamma = {SIGMA}; silhouette loss alpha.sum(), RGB (Phong, one headlight) loss rgb.sum(), "
        "backward w.r.t. the vertices. Every figure below comes from this run.",
        "",
    ]
    for header, rows in runs:
        lines += table(header, rows, args.repeats)
    text = "\n".join(lines)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(text)
    print(f"Machine: {machine}; load at the end {load:.1f}; {minutes:.1f} min")
    if args.write:
        write_report(args.write, text, f"{machine}; load at the end {load:.1f}", note=f" ({minutes:.1f} min)")


if __name__ == "__main__":
    main()
