"""A joblib worker killed by the OS (the OOM killer, a segfault) fails its own job; the sweep finishes the rest."""

from __future__ import annotations

import json

import pytest
from joblib.externals.loky.process_executor import TerminatedWorkerError

from runner.launcher import death_message
from runner.report import report_main
from tests.conftest import read_metrics, run_dwx

KILLED = "the worker process died (signal 9: killed by the OS, e.g. out of memory)"


@pytest.mark.slow
def test_a_job_whose_worker_is_killed_fails_alone_and_the_others_finish(tmp_path, capsys):
    """Job 0 kills its worker with SIGKILL at step 3; loky then kills job 1's worker, and job 2 has not
    started: jobs 1 and 2 run again (job 1 from its checkpoint when it has one) and complete."""
    sweep = tmp_path / "sweep"
    out = run_dwx(
        "run",
        "-m",
        "task=pose_fit_dies",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "seed=0,1,2",
        "task.die_seed=0",
        "task.die_at_step=3",
        "task.step_delay_s=0.02",
        "loop.steps=30",
        "loop.checkpoint_every=2",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
        toy=True,
    )
    assert out.returncode == 0, out.stderr  # as with any failed job of a sweep
    records = {i: read_metrics(sweep / str(i)) for i in range(3)}
    assert records[0]["status"] == "failed" and records[0]["error"] == KILLED
    assert records[0]["overrides"][:2] == ["task=pose_fit_dies", "seed=0"]
    for i in (1, 2):
        assert records[i]["status"] == "completed" and records[i]["steps"] == 30, records[i]
    assert f"job 0: {KILLED}" in out.stdout + out.stderr

    assert report_main(sweep, "json") == 0  # `dwx report <sweep>`, in this process
    rows = json.loads(capsys.readouterr().out)
    assert sorted((r["seed"], r["status"]) for r in rows) == [("0", "failed"), ("1", "completed"), ("2", "completed")]


@pytest.mark.slow
def test_one_job_at_a_time_runs_each_job_in_a_worker_process(tmp_path):
    """joblib runs n_jobs=1 in the sweep's own process, which the SIGKILL would end: the jobs run alone in a
    worker process instead (job 0 completes there, job 1 kills it)."""
    sweep = tmp_path / "sweep"
    out = run_dwx(
        "run",
        "-m",
        "task=pose_fit_dies",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=1",
        "seed=0,1",
        "task.die_seed=1",
        "task.die_at_step=1",
        "loop.steps=3",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
        toy=True,
    )
    assert out.returncode == 0, out.stderr
    assert read_metrics(sweep / "0")["status"] == "completed" and read_metrics(sweep / "1")["error"] == KILLED


@pytest.mark.parametrize(
    "codes, message",
    [
        ("{SIGKILL(-9)}", KILLED),
        ("{SIGSEGV(-11)}", "the worker process died (signal 11: segmentation fault)"),
        ("{SIGABRT(-6)}", "the worker process died (signal 6: aborted)"),
        ("{EXIT(3)}", "the worker process died (exit code 3)"),
        ("{}", "the worker process died"),
    ],
)
def test_death_message_names_the_signal(codes, message):
    error = TerminatedWorkerError(
        "A worker process managed by the executor was unexpectedly terminated. This could be caused by a "
        "segmentation fault while calling the function or by an excessive memory usage causing the Operating "
        f"System to kill the worker.\n\nThe exit codes of the workers are {codes}\n"
    )
    assert death_message(error) == message
