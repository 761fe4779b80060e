"""Accuracy and speed of ``physical_params``: every scene from many seeded random initial guesses.

For each scene, runs the default config (``dwx run task=physical_params scene=<name> seed=<s>``) in-process
for seeds 0..N-1 (each seed draws a different initial guess inside the prior and different pixel noise), and
prints per recovered parameter the median and worst relative error, the error of the uninformed guess "middle
of the prior range" (gradSim's "average" baseline), the target, and the median wall time per run. Then fits
the real Schmidt–Lipson pendulum and prints its period against the period measured from the data.

    python benchmarks/physics.py                 # 10 seeds per scene, all scenes, and the real pendulum
    python benchmarks/physics.py --seeds 3 --scenes push cloth --no-real

gradSim (Jatavallabhula et al., ICLR 2021) reports from 256-px video on a GPU: mass 9e-5 relative error
(0.103 for the average guess), friction 0.007, contact stiffness 0.003, contact damping 0.40.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from runner.cli import CONFIG_DIR
from runner.logging import NullLogger
from runner.loop import Loop
from tasks.physical_params.metrics import relative_error

SCENES = ("projectile", "push", "bouncing_ball", "sliding_block", "pendulum", "cloth")
TARGETS = {  # the targets: largest acceptable median relative error per (scene, parameter)
    ("projectile", "speed"): 0.01,
    ("projectile", "angle"): 0.01,
    ("push", "mass"): 0.01,
    ("bouncing_ball", "restitution"): 0.02,
    ("sliding_block", "friction"): 0.02,
    ("pendulum", "length"): 0.01,
    ("pendulum", "damping"): 0.05,
    ("cloth", "stiffness"): 0.02,
}


def run(overrides: list[str]):
    """One in-process run of the composed config; returns (task, final metrics, wall time [s], steps)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name="config", overrides=["task=physical_params", "logger=none", "loop.progress=off", *overrides]
        )
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(1)  # small tensors: one intra-op thread is fastest
    started = time.perf_counter()
    task = instantiate(cfg.task, _convert_="all")
    task.setup(torch.device("cpu"))
    metrics = Loop.from_config(cfg, task, NullLogger()).run().metrics
    return task, metrics, time.perf_counter() - started, cfg.loop.steps


def bench_scene(scene: str, seeds: range) -> list[str]:
    errors, walls, steps, specs = {}, [], 0, {}
    for seed in seeds:
        task, metrics, wall, steps = run([f"scene={scene}", f"seed={seed}"])
        specs = task.scene.specs
        for name in specs:
            errors.setdefault(name, []).append(metrics[f"rel_err_{name}"])
        walls.append(wall)
        print(
            f"  {scene} seed {seed}: "
            + ", ".join(
                f"{n}={metrics[n]:.4g} (init {task.estimates.initial[n]:.4g}, rel err {metrics[f'rel_err_{n}']:.2e})"
                for n in specs
            )
            + f"  {wall:.1f} s",
            flush=True,
        )
    rows = []
    for name, spec in specs.items():
        median = statistics.median(errors[name])
        target = TARGETS.get((scene, name))
        verdict = "-" if target is None else ("yes" if median <= target else "NO")
        rows.append(
            f"| {scene} | {name} | {median:.2e} | {max(errors[name]):.2e} | "
            f"{relative_error(spec.middle, spec.truth):.2e} | {'-' if target is None else f'{target:.0%}'} | "
            f"{verdict} | {statistics.median(walls):.1f} | {steps} |"
        )
    return rows


def bench_real() -> str:
    _, m, wall, steps = run(["experiment=physics_pendulum_real"])
    return (
        f"real pendulum (Schmidt & Lipson): period {m['period']:.4f} s (fit) vs {m['period_measured']:.4f} s "
        f"(measured from the data), rel. diff {m['rel_err_period']:.2e}; length {m['length']:.3f} m, "
        f"small-angle period {m['small_angle_period']:.3f} s, damping {m['damping']:.4f} 1/s, "
        f"RMS residual {m['residual_rad']:.4f} rad; {steps} steps, {wall:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeded initial guesses per scene")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from here (to split a benchmark)")
    parser.add_argument("--scenes", nargs="*", default=list(SCENES), choices=SCENES)
    parser.add_argument("--no-real", action="store_true", help="skip the real pendulum fit")
    args = parser.parse_args()
    rows = []
    for scene in args.scenes:
        rows += bench_scene(scene, range(args.first_seed, args.first_seed + args.seeds))
    print(f"\n{args.seeds} seeds per scene (random initial guess in the prior, pixel noise 0.02, default config)\n")
    print(
        "| scene | param | median rel err | worst rel err | mid-prior guess rel err | target | met | "
        "median wall [s] | steps |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if not args.no_real:
        print("\n" + bench_real())


if __name__ == "__main__":
    main()
