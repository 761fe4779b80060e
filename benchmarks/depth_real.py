"""depth_from_video ``mode=fit`` on real and embedded videos: depth accuracy beside the constant baseline, focal length,
trajectory error and wall time.

Runs ``dwx run task=depth_from_video mode=fit`` with its defaults (``threads=2``) on the 7-Scenes kitchen clip
(``../shared/data/7scenes_redkitchen``) with its intrinsics, with them estimated (``task.intrinsics=estimate``) and
with each frame's exposure fitted (``task.exposure=true``), and on the first held-out embedded street video; prints
one table row per run and seed (the seed orders the target frames), and with several seeds the median of each
column. ``--write`` also writes the table to docs/depth_from_video_fit.md.

``--clips DIR ...`` adds real clips of your own, each a folder with ``frames/`` (sorted by name), ``depth/`` (one
ground-truth depth per frame: 16-bit PNG in mm or .npy in m), ``intrinsics.yaml`` (fx, fy, cx, cy, width,
height) and optionally ``poses.txt`` (TUM ``i tx ty tz qx qy qz qw``, camera to world: its path length is given as
``data.baseline_m``, for the columns in metres); they run with ``data=frames`` and its defaults.
``--skip-builtin`` runs only those.

    python benchmarks/depth_real.py [--write] [--threads N] [--seeds 0 1 2] [--clips DIR ...] [--skip-builtin]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
KITCHEN = ROOT.parent / "shared" / "data" / "7scenes_redkitchen"
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT)]
from machine import machine_line, write_report  # noqa: E402

from tasks.depth_from_video.data import SevenScenes  # noqa: E402
from tasks.depth_from_video.metric_scale import chord_length, path_length  # noqa: E402


def kitchen_path_length() -> float:
    """The length of the 7-Scenes clip's true camera path [m] (the frames the fit sees): the distance a user would
    measure and give as ``data.baseline_m``."""
    seq = SevenScenes(str(KITCHEN)).load().test[0]
    return path_length(seq.cam_from_world @ seq.cam_from_world[0].inverse())


def cases() -> dict[str, list[str]]:
    """The runs, each with one known length for the metric columns (it changes no fitted value)."""
    kitchen = ["data=seven_scenes", f"data.root={KITCHEN}", f"data.baseline_m={kitchen_path_length():.4f}"]
    return {
        "7-Scenes kitchen, intrinsics given": kitchen,
        "7-Scenes kitchen, intrinsics estimated": [*kitchen, "task.intrinsics=estimate"],
        "7-Scenes kitchen, intrinsics given, exposure fitted": [*kitchen, "task.exposure=true"],
        "streets, held-out video 0": ["data.camera_height=1.5"],
    }


def clip_cases(folders: list[Path]) -> dict[str, list[str]]:
    """``data=frames`` runs of real clips in the layout ``--clips`` describes."""
    runs = {}
    for folder in folders:
        overrides = [
            "data=frames",
            f"data.path={folder / 'frames'}",
            f"data.intrinsics={folder / 'intrinsics.yaml'}",
            f"data.depth_path={folder / 'depth'}",
        ]
        if (folder / "poses.txt").is_file():  # TUM rows: the camera centre is (tx, ty, tz)
            centres = torch.from_numpy(np.loadtxt(folder / "poses.txt", ndmin=2)[:, 1:4])
            overrides.append(f"data.baseline_m={chord_length(centres):.4f}")  # as the fit measures its own path
        runs[folder.name] = overrides
    return runs


def run(overrides: list[str], threads: int, out: Path) -> tuple[dict, float]:
    """One ``mode=fit`` run in ``out``: its metrics.json and the command's wall time [s]."""
    cmd = [
        sys.executable,
        "-m",
        "runner.cli",
        "run",
        "task=depth_from_video",
        "mode=fit",
        f"threads={threads}",
        "logger=none",
        f"hydra.run.dir={out}",
        *overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "metrics.json").read_text()), time.perf_counter() - start


def row(name: str, record: dict, wall: float) -> str:
    m = record["metrics"]
    focal = f"{m['focal_px']:.1f}"
    if "focal_true_px" in m:
        focal += f" / {m['focal_true_px']:.1f} ({100 * m['focal_rel_error']:.1f} %)"
    return (
        f"| {name} | {m['abs_rel']:.3f} | {m['baseline_abs_rel']:.3f} | {m['abs_rel'] / m['baseline_abs_rel']:.2f} | "
        f"{m['a1']:.3f} | {m['baseline_a1']:.3f} | {focal} | {m.get('ate', float('nan')):.4f} | "
        f"{m.get('abs_rel_metric', float('nan')):.3f} | {m.get('scale_ratio', float('nan')):.3f} | {record['steps']} | "
        f"{wall:.0f} |"
    )


def median_record(records: list[dict]) -> dict:
    """The per-column median of several runs' metrics.json records (steps included)."""
    metrics = {k: statistics.median(r["metrics"][k] for r in records) for k in records[0]["metrics"]}
    return {"metrics": metrics, "steps": round(statistics.median(r["steps"] for r in records))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="also write docs/depth_from_video_fit.md")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each run (default 2)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of each case (default 0)")
    parser.add_argument("--clips", type=Path, nargs="+", default=[], help="folders of real clips (see above)")
    parser.add_argument("--skip-builtin", action="store_true", help="run only the --clips")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1; 2 with --threads 1 on 2 cores)")
    args = parser.parse_args()
    runs = {} if args.skip_builtin else cases()
    runs.update(clip_cases(args.clips))
    machine = machine_line()
    lines = [
        "| video | abs_rel | constant baseline | ratio | a1 | baseline a1 | focal px: fit / truth (error) | ATE "
        "| abs_rel in metres | depth / truth | steps | wall s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    jobs = [(name, seed, overrides) for name, overrides in runs.items() for seed in args.seeds]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(run, [*overrides, f"seed={seed}"], args.threads, Path(tmp) / f"{i}")
            for i, (_, seed, overrides) in enumerate(jobs)
        ]
        done: dict[str, list[tuple[dict, float]]] = {}
        for (name, seed, _), future in zip(jobs, futures):
            record, wall = future.result()
            done.setdefault(name, []).append((record, wall))
            lines.append(row(f"{name}, seed {seed}" if len(args.seeds) > 1 else name, record, wall))
            print(lines[-1], flush=True)
            if len(args.seeds) > 1 and len(done[name]) == len(args.seeds):
                records, walls = zip(*done[name])
                lines.append(row(f"**{name}, median**", median_record(list(records)), statistics.median(walls)))
                print(lines[-1], flush=True)
    text = (
        "# depth_from_video mode=fit: measured\n\n"
        f"`dwx run task=depth_from_video mode=fit` with its defaults, `threads={args.threads}`, {args.jobs} run(s) "
        "at a time, seeds "
        f"{', '.join(map(str, args.seeds))}; abs_rel and a1 after "
        "per-frame median scaling over every frame with ground truth, beside the best constant depth per frame (ratio "
        "= abs_rel / baseline); ATE in metres after a Sim(3) alignment (Umeyama); the focal length's truth is "
        "sqrt(fx fy) of the data (the streets' pixels are not square: fx != fy, so a fit of one focal length cannot "
        "match both); \"in metres\": the depth put in metres by one known length, without per-image scaling (7-Scenes: "
        "data.baseline_m = the length of the true camera path; streets: data.camera_height=1.5, the generator's "
        "mean camera height), and the median ratio of that depth to the truth (1 = the scale is right); wall time "
        "of the whole command (data loading, fit, artifacts)."
        + (
            f" Real clips ({', '.join(p.name for p in args.clips)}): data=frames with its defaults, depth from the "
            "clip's RGB-D sensor, data.baseline_m from its camera path; their origins and licences are in each "
            "folder's SOURCES.md (not shipped with dwx)."
            if args.clips
            else ""
        )
        + "\n\n"
        + "\n".join(lines)
    )
    print("\n" + text + f"\n\nMachine: {machine}")
    if args.write:
        write_report(ROOT / "docs" / "depth_from_video_fit.md", text, machine)


if __name__ == "__main__":
    main()
