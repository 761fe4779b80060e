"""Sweep benchmarks: joblib speed-up over a sequential sweep, and an Optuna search against the default.

1. Eight small physical_params jobs (``experiment=physics_tiny``, an 8-value learning-rate grid) run
   as one ``dwx run -m`` sweep, sequentially (Hydra's basic launcher) and with
   ``hydra/launcher=joblib`` (one job per core, torch threads split between them). Target: the joblib
   sweep takes at most 0.6x the sequential wall time. Each variant runs ``--repeats`` times; the
   median is reported.
2. A 30-trial Optuna search (``hparams_search=physical_params``) on the same scene, against one run
   of the default configuration. Target: the best trial's rel_err is at most the default's.

    python benchmarks/sweep.py [--repeats 3] [--steps 60] [--trials 30] [--only joblib|optuna] [--json]

Every sweep goes to a temporary folder; the Optuna sweep folder (with report.md and report.png) is
kept and printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENE = ["task=physical_params", "experiment=physics_tiny", "logger=none"]
LRS = "0.02,0.04,0.06,0.08,0.1,0.12,0.14,0.16"


def dwx(*args: str) -> float:
    """Run ``dwx ARGS`` and return its wall time [s]; raise with stderr when it fails."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"dwx {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return time.perf_counter() - t0


def read_metric(run_dir: Path, name: str) -> float:
    record = json.loads((run_dir / "metrics.json").read_text())
    if record["status"] != "completed":
        raise RuntimeError(f"{run_dir}: status {record['status']}: {record['error']}")
    return record["metrics"][name]


def bench_joblib(repeats: int, steps: int, tmp: Path) -> dict:
    common = ["run", "-m", *SCENE, f"loop.steps={steps}", f"optim.lr={LRS}"]
    times = {"sequential": [], "joblib": []}
    for r in range(repeats):
        for name, extra in (("sequential", []), ("joblib", ["hydra/launcher=joblib"])):
            sweep = tmp / f"{name}_{r}"
            times[name].append(dwx(*common, *extra, f"hydra.sweep.dir={sweep}"))
            assert len(list(sweep.glob("*/metrics.json"))) == 8, f"{sweep}: not every job wrote metrics.json"
    seq, par = statistics.median(times["sequential"]), statistics.median(times["joblib"])
    return {
        "jobs": 8,
        "steps": steps,
        "sequential_s": times["sequential"],
        "joblib_s": times["joblib"],
        "median_sequential_s": round(seq, 2),
        "median_joblib_s": round(par, 2),
        "ratio": round(par / seq, 3),
        "target_ratio": 0.6,
    }


def bench_optuna(trials: int, tmp: Path) -> dict:
    default = tmp / "default"
    t_default = dwx("run", *SCENE, f"hydra.run.dir={default}")
    sweep = tmp / "optuna"
    t_search = dwx(
        "run",
        "-m",
        *SCENE,
        "hparams_search=physical_params",
        f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweep.dir={sweep}",
    )
    values = []
    for run in sweep.glob("*/metrics.json"):
        record = json.loads(run.read_text())
        if record["status"] == "completed":
            values.append(record["metrics"]["rel_err"])
    dwx("report", str(sweep))
    best, base = min(values), read_metric(default, "rel_err")
    return {
        "trials": trials,
        "completed_trials": len(values),
        "default_rel_err": base,
        "best_rel_err": best,
        "best_over_default": round(best / base, 3),
        "search_wall_s": round(t_search, 1),
        "default_wall_s": round(t_default, 1),
        "sweep_dir": str(sweep),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each sweep variant (median reported)")
    parser.add_argument("--steps", type=int, default=60, help="loop steps of each small job")
    parser.add_argument("--trials", type=int, default=30, help="Optuna trials")
    parser.add_argument("--only", choices=("joblib", "optuna"), help="run one of the two benchmarks")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if args.repeats < 1 or args.steps < 1 or args.trials < 1:
        parser.error("--repeats, --steps and --trials must be positive")
    results = {}
    tmp = Path(tempfile.mkdtemp(prefix="dwx_sweep_bench_"))
    if args.only in (None, "joblib"):
        results["joblib"] = bench_joblib(args.repeats, args.steps, tmp)
    if args.only in (None, "optuna"):
        results["optuna"] = bench_optuna(args.trials, tmp)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    if "joblib" in results:
        j = results["joblib"]
        print(
            f"8 jobs x {j['steps']} steps: sequential {j['median_sequential_s']} s, joblib {j['median_joblib_s']} s "
            f"(median of {args.repeats}); ratio {j['ratio']} (target <= {j['target_ratio']})"
        )
    if "optuna" in results:
        o = results["optuna"]
        print(
            f"Optuna {o['trials']} trials ({o['completed_trials']} completed, {o['search_wall_s']} s): best rel_err "
            f"{o['best_rel_err']:.4g} vs default {o['default_rel_err']:.4g} (ratio {o['best_over_default']}, "
            f"target <= 1); sweep in {o['sweep_dir']}"
        )


if __name__ == "__main__":
    main()
