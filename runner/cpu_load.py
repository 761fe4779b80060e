"""How many cores are free now: the thread count of ``threads=auto``.

Two torch (OpenMP) threads on a core that another process also wants spin-wait against it: beside one
CPU-bound process on 2 cores the depth networks' step took 3.2x its idle time at 2 threads, 1.1-1.4x at 1
thread (benchmarks/contention.py, docs/contention.md). ``threads=auto`` therefore takes the cores that are
idle when the run starts, read from /proc/stat over a short interval.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger("dwx")


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs since boot, or None where /proc/stat is not readable."""
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(interval_s: float = 0.25) -> float | None:
    """Cores that other processes kept busy over ``interval_s`` [s] (this process sleeps meanwhile)."""
    first = _cpu_times()
    time.sleep(interval_s)
    second = _cpu_times()
    if first is None or second is None or second[1] <= first[1]:
        return None
    share = (second[0] - first[0]) / (second[1] - first[1])
    return share * (os.cpu_count() or 1)


def auto_threads(cores: int) -> int:
    """Torch threads for a run on ``cores`` usable cores: those not busy now (at least 1), with a warning
    when other processes hold some of them."""
    busy = busy_cores()
    if busy is None:
        return cores
    free = max(1, min(cores, round(cores - busy)))
    if free < cores:
        log.warning(
            "the machine is busy: other processes use ~%.1f of %d cores, so this run takes %d torch thread%s "
            "(threads=auto; threads=N fixes it, and with it the run's numbers)",
            busy, cores, free, "" if free == 1 else "s",
        )
    return free
