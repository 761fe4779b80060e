"""The machine a benchmark ran on, in one line: CPU model, cores, load and a measured speed.

Machines of one kind differ by up to 2x in speed, and one machine drifts with what else runs on it,
so every recorded figure carries this line. The speed is single-thread float32 matrix multiplication
(256 x 256, median of 20) in GFLOP/s, measured when the line is made.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def matmul_gflops(n: int = 256, repeats: int = 20) -> float:
    """Single-thread float32 matmul throughput [GFLOP/s] (median over ``repeats``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(10):
                a @ b
            times.append((time.perf_counter() - t0) / 10)
    finally:
        torch.set_num_threads(threads)
    return 2 * n**3 / statistics.median(times) / 1e9


def machine_line() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu_model()}, {os.cpu_count()} cores, load {load:.1f}, "
            f"single-thread matmul {matmul_gflops():.1f} GFLOP/s")


def write_report(path: Path, text: str, machine: str, note: str = "") -> None:
    """Write a benchmark's ``text`` to ``path`` (a file under docs/), followed by the date, the command that made it
    (``python benchmarks/<script> <args>``, plus ``note`` such as its duration) and the ``machine`` line."""
    command = " ".join(["python", os.path.relpath(sys.argv[0]), *sys.argv[1:]])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{text.rstrip()}\n\nDate: {datetime.date.today().isoformat()}  \n"
                    f"Command: `{command}`{note}  \nMachine: {machine}\n")


if __name__ == "__main__":
    print(machine_line())
