"""metrics.json: the contract that reports, sweeps and other tools read from every run folder.

::

    {"task": "...", "status": "completed" | "interrupted" | "failed", "main_metric": "abs_rel",
     "mode": "min", "metrics": {...}, "steps": 1000, "skipped_steps": 0, "schedule_steps": 1000,
     "time_budget_s": null | 600.0, "wall_time_s": 123.4,
     "error": null | "...", "versions": {"python": ..., "torch": ..., "dwx": ...}, "git_commit": ...,
     "overrides": [...], "host": "...", "pid": 1234}

``steps`` counts the optimiser steps taken; ``schedule_steps`` is the schedule position reached, more than
``steps`` when ``loop.time_budget`` (``time_budget_s``) compressed the schedules onto fewer steps
(runner/budget.py).

``host`` and ``pid`` name the process that writes the record, so that ``dwx report`` can tell a run that
is still ``running`` from one whose process was killed (``stale``).

A resumed run writes nothing over the record it continues until its checkpoint has been read, and
never writes a failure over a completed record: such an attempt keeps its own record in
``attempts/<time>-<pid>.json`` beside it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import subprocess
import time
from pathlib import Path

STATUSES = ("running", "completed", "interrupted", "failed")


def versions() -> dict[str, str]:
    import hydra
    import torch

    from runner import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "hydra": hydra.__version__,
        "dwx": __version__,
    }


def git_commit() -> str | None:
    """The commit of the dwx source tree (with ``+dirty`` when it has local changes), or None."""
    src = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to a temporary file and rename it over ``path``: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(_finite_or_none(data), indent=2) + "\n")
    os.replace(tmp, path)


def _finite_or_none(x):
    """JSON has no NaN/Inf: write them as null so every JSON reader accepts the file."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_none(v) for v in x]
    return x


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def read_record(path: Path) -> dict | None:
    """The record in ``path`` (a metrics.json), or None when it is missing, unreadable or not a JSON object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def main_metric_value(record: dict) -> float:
    """The main metric of a run's record (metrics.json), NaN when it has none."""
    value = (record.get("metrics") or {}).get(record.get("main_metric"))
    return float(value) if isinstance(value, (int, float)) else math.nan


class RunRecord:
    """Keeps metrics.json of one run up to date.

    Args:
        run_dir: the run folder.
        task: the task's config name.
        overrides: the run's command-line overrides.
        resuming: this start continues the run already recorded in ``run_dir``: its updates go to an
            attempt file until :meth:`resumed` (the checkpoint was read), and stay there until the
            attempt completes when the record it continues was already completed.
    """

    def __init__(self, run_dir: Path, task: str, overrides: list[str], resuming: bool = False):
        self.path = Path(run_dir) / "metrics.json"
        previous = read_record(self.path) if resuming else None
        self._keep_previous = previous is not None and previous.get("status") == "completed"
        self._target = self.path
        if resuming:
            stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
            self._target = Path(run_dir) / "attempts" / f"{stamp}-{os.getpid()}.json"
        self.data = {
            "task": task,
            "status": "running",
            "main_metric": None,
            "mode": None,
            "metrics": {},
            "steps": 0,
            "skipped_steps": 0,
            "schedule_steps": 0,
            "time_budget_s": None,
            "wall_time_s": 0.0,
            "beats_baseline": None,
            "error": None,
            "versions": versions(),
            "git_commit": git_commit(),
            "overrides": list(overrides),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }

    def update(self, **fields) -> None:
        unknown = set(fields) - set(self.data)
        if unknown:
            raise KeyError(f"unknown metrics.json fields: {sorted(unknown)}")
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {fields['status']!r}")
        self.data.update(fields)
        write_json_atomic(self._target, self.data)
        if self._target != self.path and self.data["status"] == "completed":
            write_json_atomic(self.path, self.data)
            self._drop_attempt()

    @property
    def written_to(self) -> Path:
        """The file this start's updates go to: metrics.json, or its attempt file."""
        return self._target

    def resumed(self) -> None:
        """The checkpoint was read: from now on the record is metrics.json itself, unless the run it
        continues had completed (then only a completed attempt replaces it)."""
        if self._target != self.path and not self._keep_previous:
            self._drop_attempt()

    def _drop_attempt(self) -> None:
        """Delete this start's attempt file; its updates go to metrics.json from now on."""
        self._target.unlink(missing_ok=True)
        try:
            self._target.parent.rmdir()  # only when no other attempt is kept there
        except OSError:
            pass
        self._target = self.path


def earlier_start(run_dir: Path, overrides: list[str]) -> dict | None:
    """The record an earlier start of this same sweep job (same overrides) left in ``run_dir``, else None.

    A sweep job that SLURM requeues (pre-emption, or submitit's requeue at the time limit) or that is
    launched again into the same sweep folder (after Ctrl-C, a dead worker or a lost node) starts in its
    old folder: :func:`runner.app.run_job` skips it when that record says ``completed`` and continues from
    ``checkpoints/last.pt`` when it says ``running`` or ``interrupted``.
    """
    data = read_record(run_dir / "metrics.json")
    return data if data is not None and data.get("overrides") == overrides else None
