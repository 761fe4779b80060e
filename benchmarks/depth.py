"""depth_from_video targets: the default run's accuracy and time, training throughput, 7-Scenes.

    python benchmarks/depth.py                 # all three parts (about 15 minutes on 2 cores)
    python benchmarks/depth.py --part throughput
    python benchmarks/depth.py --part default
    python benchmarks/depth.py --part 7scenes

Targets (2-core CPU): the default `dwx run task=depth_from_video` finishes in <= 10 minutes with
abs_rel <= 0.12 and a1 >= 0.85 on the held-out synthetic test videos (median scaling); training
throughput >= 10x monodepth2's own code at the same image size; on the real 7-Scenes clip the
network beats the constant-depth baseline.

A reference from elsewhere: monodepth2's own code (ResNet-18 from scratch, batch 4, 2 threads), measured on
2026-11-23 on a machine of this kind, not rerun here: 1.65 images/s at 96x320, 1.09 at 128x416, 0.55 at
192x640. The throughput part prints it beside its own figure, never as a ratio (the machines' speeds differ
by up to 2x). Every run's figures, by date: docs/depth_from_video_results.md.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
MONODEPTH2_IMAGES_PER_S = {(96, 320): 1.65, (128, 416): 1.09, (192, 640): 0.55}


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def throughput(overrides: list[str], steps: int = 20) -> None:
    """Training images per second (target frames per second of loss + backward + Adam step)."""
    import torch
    from hydra.utils import instantiate

    from runner.optim import build_optimizer

    torch.set_num_threads(2)
    cfg = compose(["task=depth_from_video", *overrides])
    task = instantiate(cfg.task)
    task.setup(torch.device("cpu"))
    opt = build_optimizer(cfg.optim, task.param_groups())
    times = []
    for step in range(steps + 3):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        sum(task.loss(step).values()).backward()
        opt.step()
        if step >= 3:  # warm-up
            times.append(time.perf_counter() - t)
    size = tuple(cfg.data.image_size)
    ips = task.batch_size / statistics.median(times)
    ref = MONODEPTH2_IMAGES_PER_S.get(size)
    reference = (
        f"monodepth2's reference, measured 2026-11-23 on another run of a machine of this kind: {ref} images/s"
        if ref
        else "no monodepth2 reference at this size"
    )
    print(
        f"throughput {size[0]}x{size[1]} batch {task.batch_size}: {ips:.1f} images/s "
        f"(median of {steps} steps, 2 threads); {reference}"
    )


def run_dwx(args: list[str]) -> tuple[dict, float]:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "runner.cli", "run", *args, f"hydra.run.dir={tmp}/run"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            print(proc.stderr[-3000:])
            raise SystemExit(f"dwx run {' '.join(args)} failed")
        return json.loads((Path(tmp) / "run" / "metrics.json").read_text()), wall


def report(name: str, m: dict, wall: float) -> None:
    x = m["metrics"]
    ate = f"  ATE {x['ate']:.4f}" if "ate" in x else ""
    print(
        f"{name}: abs_rel {x['abs_rel']:.4f} (constant-depth baseline {x['baseline_abs_rel']:.4f})  "
        f"a1 {x['a1']:.3f}  rmse {x['rmse']:.3f}{ate}  steps {m['steps']} of {m.get('schedule_steps') or m['steps']}"
        f"  wall {wall:.0f} s "
        f"(including data generation on a cold cache)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("throughput", "default", "7scenes", "all"), default="all")
    args = parser.parse_args()
    print(f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(default)')}")
    if args.part in ("throughput", "all"):
        from runner.malloc import tune_malloc

        print(f"malloc tuned: {tune_malloc()}")  # in this process, as `dwx run` does (malloc_tuning)
        # a small data set: throughput does not depend on how many videos there are; steps at the stated
        # size (the default's coarse phase would run these first steps at half size)
        small = [
            "data.train_sequences=1",
            "data.test_sequences=1",
            "data.frames_per_sequence=12",
            "task.coarse_steps=0",
        ]
        throughput(small)  # the default resolution
        throughput([*small, "data.image_size=[96,320]"])  # the smallest size with a monodepth2 figure
    if args.part in ("default", "all"):
        with tempfile.TemporaryDirectory() as cache:  # cold cache: data generation counts in the 10 minutes
            os.environ["DWX_CACHE"] = cache
            m, wall = run_dwx(["task=depth_from_video"])
        report("default run", m, wall)
        print("targets: abs_rel <= 0.12, a1 >= 0.85, wall <= 600 s")
    if args.part in ("7scenes", "all"):
        root = SHARED / "7scenes_redkitchen"
        if not root.exists():
            print(f"7-Scenes: skipped, {root} not found")
            return
        m, wall = run_dwx(["task=depth_from_video", "experiment=depth_7scenes", f"data.root={root}"])
        report("7-Scenes redkitchen", m, wall)


if __name__ == "__main__":
    main()
