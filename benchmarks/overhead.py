"""Runner overhead: CLI start-up times and the loop's own cost per step.

Prints `dwx --help` and `dwx list` wall times (median of 5), the time from process start to the
first optimisation step of a tiny run, and the loop's overhead per step on a trivial task without
logging (loop step time minus the bare forward/backward/step of the same task).

    python benchmarks/overhead.py
    GLIBC_TUNABLES=glibc.malloc.trim_threshold=4294967296:glibc.malloc.mmap_threshold=33554432 \
        python benchmarks/overhead.py

Targets on a 2-core CPU: --help <= 1.5 s, list <= 2 s, overhead <= 1 ms per step.
"""

from __future__ import annotations

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
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "fixtures")]

from runner.logging import NullLogger  # noqa: E402
from runner.loop import Loop, LoopSettings  # noqa: E402
from tests.fixtures.pose_task import PointCloudPose  # noqa: E402


def wall(cmd: list[str], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def time_to_first_step() -> float:
    """Process start -> end of step 1, from the run's own timing (wall time minus the steps' time)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONPATH=f"{ROOT / 'tests' / 'fixtures'}:{ROOT}")
        t = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "runner.cli",
                "run",
                "--config-dir",
                str(ROOT / "tests/fixtures/configs"),
                "task=pose_fit",
                "loop.steps=1",
                "logger=none",
                f"hydra.run.dir={tmp}",
            ],
            check=True,
            capture_output=True,
            cwd=ROOT,
            env=env,
        )
        total = time.perf_counter() - t
        steps_time = json.loads((Path(tmp) / "metrics.json").read_text())["wall_time_s"]
        return total, steps_time


def loop_overhead(steps: int = 2000) -> tuple[float, float]:
    """(loop ms/step, bare ms/step) on the 3-point pose task with every cadence off."""
    torch.set_num_threads(1)
    task = PointCloudPose(num_points=3, noise=0.0)
    task.setup(torch.device("cpu"))
    opt = torch.optim.SGD([{"params": [task.rot], "name": "r"}, {"params": [task.t], "name": "t"}], lr=1e-3)
    settings = LoopSettings(
        steps=steps, eval_every=10**9, log_every=10**9, image_every=0, checkpoint_every=10**9, progress="off"
    )
    loop = Loop(task, opt, None, NullLogger(), settings)
    loop.total_steps = steps  # the final evaluation is not part of the per-step cost
    t = time.perf_counter()
    loop.run()
    loop_ms = (time.perf_counter() - t) * 1e3 / steps

    t = time.perf_counter()
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        sum(task.loss(step).values()).backward()
        opt.step()
    bare_ms = (time.perf_counter() - t) * 1e3 / steps
    return loop_ms, bare_ms


def main() -> None:
    print(f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(default)')}")
    print(f"dwx --help          {wall([sys.executable, '-m', 'runner.cli', '--help']):.3f} s  (target <= 1.5 s)")
    print(f"dwx list            {wall([sys.executable, '-m', 'runner.cli', 'list']):.3f} s  (target <= 2 s)")
    total, steps_time = time_to_first_step()
    print(f"start -> 1 step     {total:.3f} s  (of which the loop itself {steps_time:.3f} s)")
    runs = [loop_overhead() for _ in range(5)]
    loop_ms = statistics.median(r[0] for r in runs)
    bare_ms = statistics.median(r[1] for r in runs)
    print(
        f"loop step           {loop_ms:.3f} ms; bare step {bare_ms:.3f} ms; "
        f"overhead {loop_ms - bare_ms:.3f} ms/step  (target <= 1 ms)"
    )


if __name__ == "__main__":
    main()
