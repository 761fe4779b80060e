"""Physics engines side by side on the same scenes: dwx's own and the optional third-party ones.

For each rigid scene (projectile, bouncing ball, sliding block, push) on ``physics=rigid`` and ``physics=newton``,
and for the cloth on ``physics=mass_spring`` and ``physics=warp_springs``, with each scene's engine settings
(``dwx run task=physical_params scene=<scene> physics=<engine>``):

* forward: one rollout of the whole video at the true parameters under ``torch.no_grad()`` [s], median of
  ``--repeats`` after one warm-up rollout;
* forward + backward: the same rollout with the recovered parameters requiring grad, and the gradient of a fixed
  random projection of the scene's points [s], median of ``--repeats``;
* fit: ``physical_params`` in-process, seed 0, ``--steps`` Adam steps of learning rate 0.3 on 32-pixel video
  (three pyramid levels), everything else the scene's default: each recovered parameter's estimate, truth and
  relative error, and the run's wall time. The ground truth is always simulated by the scene's ``truth_physics``
  (dwx's own engine with more substeps), so a third-party engine's fit also carries the difference between the
  two models.

An engine whose package is missing is left out (said on stderr). Every figure is measured in this run.

    python benchmarks/backends_physics.py [--steps 30] [--repeats 3]

``physics_rows()`` returns the rows (dicts) and ``physics_markdown(rows)`` formats them, for
``benchmarks/backends.py``.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from physics import run  # noqa: E402  (benchmarks/physics.py: one in-process physical_params run)

from runner.cli import CONFIG_DIR  # noqa: E402

# (scene, engines compared on it); each engine is a configs/physics option
PAIRS = (
    ("projectile", ("rigid", "newton")),
    ("bouncing_ball", ("rigid", "newton")),
    ("sliding_block", ("rigid", "newton")),
    ("push", ("rigid", "newton")),
    ("cloth", ("mass_spring", "warp_springs")),
)
# 32-pixel video and Adam at lr 0.3: the defaults (64 px, lr 0.1) need the default 100 steps, 2.5x longer on Newton
FIT_OVERRIDES = ("scene.image_size=32", "task.pyramid_weights=[1.0,4.0,16.0]", "optim.lr=0.3", "seed=0")


def compose_config(overrides: list[str]):
    """The config ``dwx run OVERRIDES`` composes."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def _available(engine: str) -> bool:
    """Whether the engine's module imports (an optional package may be missing)."""
    target = compose_config([f"physics={engine}"]).physics._target_
    try:
        importlib.import_module(target.rpartition(".")[0])
    except ImportError as error:
        print(f"physics={engine} left out: {error}", file=sys.stderr)
        return False
    return True


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def time_rollouts(scene_name: str, engine_name: str, repeats: int) -> tuple[float, float]:
    """(forward, forward + backward) median times [s] of the scene's whole video at its true parameters."""
    cfg = compose_config(["task=physical_params", f"scene={scene_name}", f"physics={engine_name}"])
    scene = instantiate(cfg.scene, _convert_="all")
    engine = instantiate(cfg.physics)
    truth = scene.truth()
    with torch.no_grad():
        points = scene.simulate(engine, truth, scene.frames)  # warm-up (Warp loads or compiles its kernels)
    weights = torch.randn(points.shape, generator=torch.Generator().manual_seed(0))

    def forward():
        with torch.no_grad():
            scene.simulate(engine, truth, scene.frames)

    def forward_backward():
        values = {name: value.clone().requires_grad_() for name, value in truth.items()}
        loss = (scene.simulate(engine, values, scene.frames) * weights).sum()
        torch.autograd.grad(loss, list(values.values()))

    return _median_time(forward, repeats), _median_time(forward_backward, repeats)


def fit(scene_name: str, engine_name: str, steps: int) -> dict:
    """One physical_params fit: {"params": [{name, truth, estimate, rel_err}], "fit_s": wall time [s]}."""
    task, metrics, wall, _ = run(
        [
            f"scene={scene_name}",
            f"physics={engine_name}",
            f"loop.steps={steps}",
            f"loop.eval_every={steps}",
            *FIT_OVERRIDES,
        ]
    )
    params = [
        {"name": name, "truth": spec.truth, "estimate": metrics[name], "rel_err": metrics[f"rel_err_{name}"]}
        for name, spec in task.scene.specs.items()
    ]
    return {"params": params, "fit_s": wall}


def physics_rows(steps: int = 30, repeats: int = 3) -> list[dict]:
    """One row per (scene, engine): scene, engine, forward_s, forward_backward_s, steps, fit_s and params
    (a list of {name, truth, estimate, rel_err})."""
    rows = []
    for scene_name, engines in PAIRS:
        for engine_name in engines:
            if not _available(engine_name):
                continue
            forward, forward_backward = time_rollouts(scene_name, engine_name, repeats)
            row = {
                "scene": scene_name,
                "engine": engine_name,
                "forward_s": forward,
                "forward_backward_s": forward_backward,
                "steps": steps,
                **fit(scene_name, engine_name, steps),
            }
            print(
                f"  {scene_name} on {engine_name}: forward {forward:.3f} s, forward + backward "
                f"{forward_backward:.3f} s, fit {row['fit_s']:.1f} s",
                file=sys.stderr,
                flush=True,
            )
            rows.append(row)
    return rows


def physics_markdown(rows: list[dict]) -> str:
    """The rows as a markdown table, one line per (scene, engine)."""
    lines = [
        "| scene | physics | forward [s] | forward + backward [s] | fit: estimate (truth, rel. err) | fit steps | "
        "fit wall [s] |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        fitted = "; ".join(
            f"{p['name']} {p['estimate']:.4g} ({p['truth']:.4g}, {p['rel_err']:.1e})" for p in row["params"]
        )
        lines.append(
            f"| {row['scene']} | {row['engine']} | {row['forward_s']:.3f} | "
            f"{row['forward_backward_s']:.3f} | {fitted} | {row['steps']} | {row['fit_s']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="Adam steps of each fit (the same for every engine)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rollouts per engine and scene")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small tensors: one intra-op thread is fastest (and what the runs use)
    from machine import machine_line

    started = time.perf_counter()
    rows = physics_rows(args.steps, args.repeats)
    print(physics_markdown(rows))
    minutes = (time.perf_counter() - started) / 60
    print(f"\nMachine: {machine_line()}; {minutes:.1f} min")


if __name__ == "__main__":
    main()
