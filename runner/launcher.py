"""Failure isolation for local parallel sweeps: a job whose worker process dies fails alone.

``hydra/launcher=joblib`` selects the plugin class in ``hydra_plugins/dwx_sweeper/joblib_launcher.py``
(registered by ``dwx run``): Hydra's joblib launcher with :func:`launch_isolated` as its ``launch``.
Hydra's plugin runs the jobs in loky worker processes. When the OS kills one (the OOM killer, a segfault
in a native kernel), loky raises ``TerminatedWorkerError`` and kills the other workers, and the whole
sweep used to stop there. Here instead:

* the batch first runs as the plugin runs it, every job in the shared pool of workers;
* when a worker dies, each job whose metrics.json says it completed, or says it failed or was interrupted
  during this launch, keeps that result. The others (not started yet, or left ``running`` by the dead worker
  or by loky killing its siblings) run again one after the other, each alone in loky's pool of one worker
  process (joblib itself would run ``n_jobs=1`` in the sweep's own process), so that a second death points
  at exactly one job. A job that left a checkpoint continues from it (:func:`runner.record.earlier_start`);
* a job whose worker dies while it runs alone is recorded as ``failed`` in its metrics.json, with the
  signal ("the worker process died (signal 9: killed by the OS, e.g. out of memory)"), and returns NaN
  as every failed dwx job of a sweep does: the sweep goes on and ends as it ends with failed jobs.

joblib runs a sweep with one job at a time (``n_jobs=1``, or ``-2`` on two cores) in the sweep's own
process, where a death would end the sweep: such a sweep runs every job alone in a worker process.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import re
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_joblib_launcher._core import execute_job
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from joblib import effective_n_jobs
from joblib.externals.loky import get_reusable_executor
from joblib.externals.loky.process_executor import TerminatedWorkerError
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from runner.record import RunRecord, earlier_start, main_metric_value, write_json_atomic

log = logging.getLogger("dwx")

_SIGNAL_CAUSES = {signal.SIGKILL: "killed by the OS, e.g. out of memory", signal.SIGSEGV: "segmentation fault"}

Launch = Callable[[Sequence[Sequence[str]], int], Sequence[JobReturn]]


def launch_isolated(
    launcher: JoblibLauncher, launch_all: Launch, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> list[JobReturn]:
    """Run a batch of jobs with ``launch_all`` (the plugin's own launch); when a worker dies, keep the
    finished jobs' results and run the others alone (see the module docstring)."""
    started = time.time()
    if effective_n_jobs(launcher.joblib.get("n_jobs")) > 1:
        try:
            return list(launch_all(job_overrides, initial_job_idx))
        except TerminatedWorkerError as e:
            log.warning(
                "%s: the jobs that finished keep their results; the others run again one at a time, "
                "each alone in a worker process",
                death_message(e),
            )
    jobs = (_Job(launcher, idx, overrides) for idx, overrides in enumerate(job_overrides, start=initial_job_idx))
    return [_finished(job, since=started) or _run_alone(job) for job in jobs]


def death_message(error: TerminatedWorkerError) -> str:
    """'the worker process died (signal 9: killed by the OS, e.g. out of memory)', from the exit code that
    loky's error names (the first one when several workers ended)."""
    codes = re.search(r"exit codes of the workers are \{([^}]*)\}", str(error))
    code = re.search(r"\((-?\d+)\)", codes.group(1)) if codes else None
    if code is None:
        return "the worker process died"
    exitcode = int(code.group(1))
    if exitcode >= 0:
        return f"the worker process died (exit code {exitcode})"
    try:
        signum = signal.Signals(-exitcode)
    except ValueError:
        return f"the worker process died (signal {-exitcode})"
    cause = _SIGNAL_CAUSES.get(signum) or (signal.strsignal(signum) or signum.name).lower()
    return f"the worker process died (signal {-exitcode}: {cause})"


class _Job:
    """One job of the batch as the sweep's process sees it: number, overrides, config and folder.

    The config is composed as the worker composes it (the plugin's ``execute_job``, Hydra's ``run_job``).
    """

    def __init__(self, launcher: JoblibLauncher, idx: int, overrides: Sequence[str]):
        self.launcher, self.idx, self.overrides = launcher, idx, list(overrides)
        self.config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, self.overrides)
        with open_dict(self.config):
            self.config.hydra.job.id = f"{self.config.hydra.job.name}_{idx}"
            self.config.hydra.job.num = idx
        self.dir = _output_dir(self.config)
        with read_write(self.config.hydra.runtime), open_dict(self.config.hydra.runtime):
            self.config.hydra.runtime.output_dir = str(self.dir)
        self.record = self.dir / "metrics.json"
        self.task_overrides = list(self.config.hydra.overrides.task)  # as run_job writes them in the record

    def result(self, value: float) -> JobReturn:
        """The job's JobReturn with ``value`` as its return value, filled in as Hydra's ``run_job`` fills it."""
        task_cfg = copy.deepcopy(self.config)
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
        return JobReturn(
            overrides=self.task_overrides,
            cfg=task_cfg,
            hydra_cfg=OmegaConf.masked_copy(self.config, "hydra"),
            working_dir=str(self.dir) if self.config.hydra.job.chdir else os.getcwd(),
            task_name=self.config.hydra.job.name,
            status=JobStatus.COMPLETED,
            _return_value=value,
        )


def _output_dir(config: DictConfig) -> Path:
    """``hydra.sweep.dir/hydra.sweep.subdir``, resolved with the job's Hydra config in place (as run_job does)."""
    sweep_cfg = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(config)
    try:
        out = os.path.join(*(str(OmegaConf.select(config, f"hydra.sweep.{key}")) for key in ("dir", "subdir")))
    finally:
        HydraConfig.instance().cfg = sweep_cfg
    return Path(os.path.abspath(out))


def _finished(job: _Job, since: float) -> JobReturn | None:
    """The job's result when its metrics.json (with the job's overrides) says it completed, or says it
    failed or was interrupted since ``since``; else None."""
    record = earlier_start(job.dir, job.task_overrides)
    if record is None:
        return None
    if record.get("status") == "completed":
        return job.result(main_metric_value(record))
    if record.get("status") in ("failed", "interrupted") and job.record.stat().st_mtime >= since:
        return job.result(math.nan)
    return None  # running, or an older failure: the job runs (again)


def _run_alone(job: _Job) -> JobReturn:
    """Run the job by itself in loky's pool of one worker process, so that a death there is this job's own."""
    started = time.time()
    launcher = job.launcher
    future = get_reusable_executor(max_workers=1).submit(
        execute_job,
        job.idx,
        job.overrides,
        launcher.hydra_context,
        launcher.config,
        launcher.task_function,
        Singleton.get_state(),
    )
    try:
        return future.result()
    except TerminatedWorkerError as e:
        return _finished(job, since=started) or _record_death(job, death_message(e))


def _record_death(job: _Job, message: str) -> JobReturn:
    """Record the job as failed with ``message`` (keeping the other fields of its record) and return NaN,
    as a failed dwx job of a sweep does."""
    record = earlier_start(job.dir, job.task_overrides)
    if record is None:
        RunRecord(job.dir, job.config.hydra.runtime.choices.get("task"), job.task_overrides).update(
            status="failed", error=message
        )
    else:
        write_json_atomic(job.record, {**record, "status": "failed", "error": message})
    log.error("job %d: %s (%s has status 'failed'; the sweep goes on)", job.idx, message, job.record)
    return job.result(math.nan)
