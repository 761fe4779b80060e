"""Mesh renderers side by side on the same scene: dwx's soft_mesh and the optional Mitsuba 3 (renderer=mitsuba).

Each renderer runs with its config's defaults (configs/renderer/<name>.yaml: soft_mesh sigma 1e-4, 50 faces per pixel;
mitsuba 16 rays per pixel, 4 + 4 gradient samples), Phong shading with the headlight, on the Spot cow (5856 faces,
grey-to-white vertex colours: Mitsuba draws no UV textures) seen from elevation 30, azimuth 45, 2.732 away with a
30 degree field of view, at 64 and 128 px, one torch (and Dr.Jit) thread:

* forward: ``renderer(meshes, cameras)`` with vertices and colours requiring grad (autograd recording, as in
  training) [ms], median of ``--repeats`` after two warm-up calls (Mitsuba compiles or loads its kernels);
* forward + backward: the same and the gradient of ``rgb.sum() + alpha.sum()`` w.r.t. vertices and colours [ms],
  median of ``--repeats``;
* fit: ``dwx run experiment=recon_cow_fit`` at 64 px (one input view, 7 held out, ``--steps`` Adam steps, seed 0,
  the same target and settings for both; soft_mesh with sigma 8e-5, i.e. recon_cow_fit's ~0.1 pixel^2 at 64 px;
  mitsuba without that soft_mesh key), judged as the task judges every fit, by its hard, 4x supersampled soft_mesh
  renderer: silhouette IoU on the input view and on the held-out views, the voxel iou_3d against the cow, and the
  loop's wall time [s].

A renderer whose package is missing is left out (said on stderr). Every figure is measured in this run.

    python benchmarks/backends_render.py [--steps 100] [--repeats 5]

``render_rows()`` returns the rows (dicts) and ``render_markdown(rows)`` formats them, for ``benchmarks/backends.py``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from hydra.utils import instantiate  # noqa: E402

from runner.geometry.cameras import PinholeCamera  # noqa: E402
from runner.geometry.mesh_io import load_obj, normalize_to_unit_cube  # noqa: E402
from runner.geometry.meshes import Meshes  # noqa: E402
from tests.conftest import compose_config  # noqa: E402  (the config `dwx run OVERRIDES` composes)

COW = ROOT.parent / "shared" / "data" / "meshes" / "spot_cow" / "cow.obj"
SIZES = (64, 128)
WARMUP = 2
# (renderer, the fit's overrides beside the shared ones)
RENDERERS = (
    ("soft_mesh", ("renderer.sigma=8e-5",)),
    ("mitsuba", ("~renderer.sigma",)),  # recon_cow_fit's sigma is a soft_mesh key
)
FIT_OVERRIDES = (
    "experiment=recon_cow_fit",
    "task.views.image_size=64",
    "seed=0",
    "threads=1",
    "logger=none",
    "loop.image_every=0",
)


def _renderer(name: str):
    """The renderer of ``configs/renderer/<name>.yaml``, or None (said on stderr) when its package is missing."""
    cfg = compose_config([f"renderer={name}"])
    try:
        importlib.import_module(cfg.renderer._target_.rpartition(".")[0])
    except ImportError as error:
        print(f"renderer={name} left out: {error}", file=sys.stderr)
        return None
    return instantiate(cfg.renderer)


def cow() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Spot cow in the unit cube: vertices (V, 3), faces (F, 3) and grey-to-white vertex colours (V, 3)."""
    mesh = load_obj(COW, load_textures=False)
    verts = normalize_to_unit_cube(mesh.verts[0])
    shade = 0.5 + 0.5 * (verts[:, 1:2] - verts[:, 1].min()) / (verts[:, 1].max() - verts[:, 1].min())
    return verts, mesh.faces[0], shade.expand(-1, 3).contiguous()


def _median_ms(fn, repeats: int) -> float:
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(1e3 * statistics.median(times), 1)


def time_renders(renderer, size: int, repeats: int) -> tuple[float, float]:
    """(forward, forward + backward) median times [ms] of the cow at ``size`` x ``size`` px."""
    verts, faces, colors = cow()
    verts.requires_grad_(True)
    colors.requires_grad_(True)
    meshes = Meshes([verts], [faces], verts_colors=[colors])
    pose = PinholeCamera.orbit(torch.tensor([30.0]), torch.tensor([45.0]), 2.732)
    cams = PinholeCamera(PinholeCamera.intrinsics_from_fov(30.0, (size, size)), pose, (size, size))

    def forward_backward():
        out = renderer(meshes, cams)
        torch.autograd.grad(out.rgb.sum() + out.alpha.sum(), [verts, colors])

    return _median_ms(lambda: renderer(meshes, cams), repeats), _median_ms(forward_backward, repeats)


def fit(name: str, overrides: tuple[str, ...], steps: int) -> dict:
    """One single_view_recon fit of the cow through renderer ``name``: the task's metrics and the loop's wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "runner.cli",
            "run",
            *FIT_OVERRIDES,
            f"renderer={name}",
            *overrides,
            f"loop.steps={steps}",
            f"loop.eval_every={steps}",
            f"loop.checkpoint_every={steps}",
            f"hydra.run.dir={tmp}",
        ]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if out.returncode != 0:
            raise RuntimeError(f"the fit through renderer={name} failed: {out.stderr.strip()[-2000:]}")
        record = json.loads((Path(tmp) / "metrics.json").read_text())
    m = record["metrics"]
    return {
        "steps": steps,
        "silhouette_iou": m["silhouette_iou"],
        "silhouette_iou_heldout": m["silhouette_iou_heldout"],
        "iou_3d": m["iou_3d"],
        "fit_s": record["wall_time_s"],
    }


def render_rows(steps: int = 100, repeats: int = 5) -> list[dict]:
    """One row per available renderer: renderer, faces, ``fwd_ms`` and ``fwd_bwd_ms`` ({image size: median ms}) and
    ``fit`` ({steps, silhouette_iou, silhouette_iou_heldout, iou_3d, fit_s})."""
    torch.set_num_threads(1)  # Mitsuba's Dr.Jit threads follow torch's
    rows = []
    for name, overrides in RENDERERS:
        renderer = _renderer(name)
        if renderer is None:
            continue
        row = {"renderer": name, "faces": int(cow()[1].shape[0]), "fwd_ms": {}, "fwd_bwd_ms": {}}
        for size in SIZES:
            row["fwd_ms"][size], row["fwd_bwd_ms"][size] = time_renders(renderer, size, repeats)
            print(
                f"  {name} at {size} px: forward {row['fwd_ms'][size]} ms, forward + backward "
                f"{row['fwd_bwd_ms'][size]} ms",
                file=sys.stderr,
                flush=True,
            )
        row["fit"] = fit(name, overrides, steps)
        print(f"  {name} fit: {row['fit']}", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def render_markdown(rows: list[dict]) -> str:
    """The rows as a markdown table, one line per renderer."""
    sizes = " | ".join(f"fwd {s} px [ms] | fwd+bwd {s} px [ms]" for s in SIZES)
    lines = [
        f"| renderer | {sizes} | fit steps | silhouette IoU, input view | silhouette IoU, held out | iou_3d | "
        "fit wall [s] |",
        "|---|" + "---|---|" * len(SIZES) + "---|---|---|---|---|",
    ]
    for row in rows:
        times = " | ".join(f"{row['fwd_ms'][s]} | {row['fwd_bwd_ms'][s]}" for s in SIZES)
        f = row["fit"]
        lines.append(
            f"| {row['renderer']} | {times} | {f['steps']} | {f['silhouette_iou']:.3f} | "
            f"{f['silhouette_iou_heldout']:.3f} | {f['iou_3d']:.3f} | {f['fit_s']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="Adam steps of each fit (the same for both)")
    parser.add_argument("--repeats", type=int, default=5, help="timed renders per renderer and image size")
    args = parser.parse_args()
    from machine import machine_line

    started = time.perf_counter()
    rows = render_rows(args.steps, args.repeats)
    table = render_markdown(rows)
    print(table)
    minutes = (time.perf_counter() - started) / 60
    machine = machine_line()
    print(f"\nMachine: {machine}; {minutes:.1f} min")


if __name__ == "__main__":
    main()
