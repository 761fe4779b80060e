"""Step time on an idle machine and beside a CPU hog, for 1 and 2 torch threads and for ``threads=auto``.

The workload is the default depth_from_video networks (DepthNet + PoseNet from configs/task) forward and
backward on a batch of 8 frames (8 pairs for PoseNet) at 64x192, with Adam: the bulk of a default depth
step. Each
configuration runs in its own process (OpenMP reads its settings once), after 5 warm-up steps, and
reports the median step time. A "hog" is one more process that spins on one core, as a browser, a
compile or another job would. The issue's target: with one hog, the default threads are no more than
2.5x slower per step than on the idle machine.

    python benchmarks/contention.py [--steps 20] [--write docs/contention.md]
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

ROOT = Path(__file__).resolve().parent.parent


def worker(threads: str, steps: int) -> None:
    """Time the workload in this process and print one JSON line: threads used, median step [s]."""
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    if threads == "auto":
        from runner.cpu_load import auto_threads

        torch.set_num_threads(auto_threads(len(os.sched_getaffinity(0))))
    else:
        torch.set_num_threads(int(threads))
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["task=depth_from_video"])
    depth_net, pose_net = instantiate(cfg.task.depth_net), instantiate(cfg.task.pose_net)
    params = [*depth_net.parameters(), *pose_net.parameters()]
    opt = torch.optim.Adam(params, lr=1e-4)
    frames = torch.rand(8, 3, 64, 192)
    times = []
    for _ in range(steps + 5):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = sum(d.mean() for d in depth_net(frames)) + 2 * pose_net(torch.cat([frames, frames], 1)).mean()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"threads": torch.get_num_threads(), "step_s": statistics.median(times[5:])}))


def measure(threads: str, steps: int, hogs: int, env: dict[str, str] | None = None) -> dict:
    """Run :func:`worker` in a subprocess beside ``hogs`` spinning processes."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hogs)]
    try:
        time.sleep(0.5 if hogs else 0.0)
        out = subprocess.run([sys.executable, __file__, "--worker", threads, "--steps", str(steps)], cwd=ROOT,
                             env={**os.environ, **(env or {})}, capture_output=True, text=True, check=True)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])


CASES = [  # (label, threads, hogs, extra environment)
    ("idle, 1 thread", "1", 0, {}),
    ("idle, 2 threads", "2", 0, {}),
    ("idle, threads=auto (the default)", "auto", 0, {}),
    ("1 hog, 1 thread", "1", 1, {}),
    ("1 hog, 2 threads", "2", 1, {}),
    ("1 hog, 2 threads, OMP_WAIT_POLICY=PASSIVE", "2", 1, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("1 hog, threads=auto (the default)", "auto", 1, {}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--write", type=Path, help="also write the table, with date, command and machine, here")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps)
        return
    from machine import machine_line, write_report

    machine = machine_line()
    rows = [(label, measure(threads, args.steps, hogs, env)) for label, threads, hogs, env in CASES]
    idle = rows[2][1]["step_s"]
    lines = [f"# Step time beside other CPU work ({time.strftime('%Y-%m-%d %H:%M')})", "",
             "DepthNet + PoseNet forward, backward and Adam step, batch 8 at 64x192; median of "
             f"{args.steps} steps after 5.", "",
             "| case | torch threads | step [ms] | vs idle default |", "| --- | --- | --- | --- |"]
    lines += [f"| {label} | {r['threads']} | {1000 * r['step_s']:.0f} | {r['step_s'] / idle:.2f}x |"
              for label, r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        write_report(args.write, text, machine)


if __name__ == "__main__":
    main()
