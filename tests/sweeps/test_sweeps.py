"""Sweeps end to end in subprocesses: grid, failure isolation, report, joblib, Optuna resume, requeue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from runner.app import threads_per_job
from tests.conftest import FIXTURES, ROOT, dwx_env, read_metrics, run_dwx

SWEEP_CONFIGS = Path(__file__).resolve().parent / "configs"
SEARCH_PATH = f"hydra.searchpath=[file://{FIXTURES / 'configs'},file://{SWEEP_CONFIGS}]"


def test_grid_isolates_a_failing_job_and_reports_best_first(tmp_path):
    sweep = tmp_path / "sweep"
    out = run_dwx(
        "run",
        "-m",
        "task=pose_fit",
        "loop.steps=20",
        "optim.lr=0.01,0.05",
        "task.nan_at_step=null,3",
        f"hydra.sweep.dir={sweep}",
        toy=True,
    )
    assert out.returncode == 0, out.stderr
    records = {i: read_metrics(sweep / str(i)) for i in range(4)}
    failed = [r for r in records.values() if r["status"] == "failed"]
    assert len(failed) == 2 and all("non-finite loss at step 3" in r["error"] for r in failed)
    assert sum(r["status"] == "completed" for r in records.values()) == 2

    for i, r in records.items():  # completed jobs log their swept values as TensorBoard hparams
        if r["status"] == "completed":
            assert _hparams(sweep / str(i) / "tb")["optim.lr"].number_value in (0.01, 0.05)

    out = run_dwx("report", str(sweep), "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["status"] for r in rows] == ["completed", "completed", "failed", "failed"]
    assert rows[0]["rot_err_deg"] < rows[1]["rot_err_deg"] and rows[0]["optim.lr"] == "0.05"
    assert {"optim.lr", "task.nan_at_step", "wall_time_s"} <= set(rows[0])
    assert (sweep / "report.md").read_text().startswith("| run | task | optim.lr | task.nan_at_step |")
    assert (sweep / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _hparams(tb_dir: Path) -> dict:
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import plugin_data_pb2

    mux = EventMultiplexer().AddRunsFromDirectory(str(tb_dir))
    mux.Reload()
    content = mux.PluginRunToTagToContent("hparams")
    sessions = [plugin_data_pb2.HParamsPluginData.FromString(c) for tags in content.values() for c in tags.values()]
    starts = [s.session_start_info for s in sessions if s.HasField("session_start_info")]
    assert starts, f"no hparams in {tb_dir}"
    return dict(starts[0].hparams)


@pytest.mark.parametrize(
    "n_jobs, cores, threads", [(1, 8, 8), (2, 8, 4), (3, 8, 2), (16, 8, 1), (-1, 8, 1), (-2, 8, 1), (-5, 8, 2)]
)
def test_threads_per_joblib_job(n_jobs, cores, threads):
    launcher = OmegaConf.create(
        {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": n_jobs}
    )
    assert threads_per_job(launcher, cores) == threads


def test_threads_left_to_torch_for_other_launchers():
    launcher = OmegaConf.create({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"})
    assert threads_per_job(launcher, 8) is None


def test_joblib_runs_jobs_in_parallel_processes_with_threads_split(tmp_path):
    sweep = tmp_path / "sweep"
    env = dwx_env()
    env.pop("OMP_NUM_THREADS")  # the launcher, not the environment, decides the threads
    out = run_dwx(
        "run",
        "-m",
        "task=pose_fit",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "loop.steps=10",
        "logger=none",
        "optim.lr=0.01,0.02",
        f"hydra.sweep.dir={sweep}",
        toy=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    expected = max(1, len(os.sched_getaffinity(0)) // 2)
    for i in range(2):
        assert read_metrics(sweep / str(i))["status"] == "completed"
        assert f"({expected} torch threads)" in (sweep / str(i) / "run.log").read_text()


def _optuna(sweep: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "runner.cli",
        "run",
        "-m",
        "task=pose_fit",
        "hparams_search=pose_fit",
        SEARCH_PATH,
        "loop.steps=20",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
        *extra,
    ]


def _completed(sweep: Path) -> int:
    n = 0
    for f in sweep.glob("*/metrics.json"):
        try:
            n += json.loads(f.read_text())["status"] == "completed"
        except (OSError, json.JSONDecodeError):
            pass
    return n


def test_optuna_search_killed_then_resumed_continues_its_trials(tmp_path):
    import optuna

    sweep = tmp_path / "sweep"
    proc = subprocess.Popen(
        _optuna(sweep, "task.step_delay_s=0.05"),
        cwd=ROOT,
        env=dwx_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while _completed(sweep) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.kill()  # a crash or a lost node: no chance to clean up
    proc.wait()
    first = _completed(sweep)
    assert 2 <= first < 4

    out = subprocess.run(_optuna(sweep), cwd=ROOT, env=dwx_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    study = optuna.load_study(study_name="pose_fit", storage=f"sqlite:///{sweep}/optuna.db")
    trials = study.get_trials()
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4  # the budget of the study, not 4 more
    assert [t.number for t in trials] == list(range(len(trials)))
    lrs = [t.params["optim.lr"] for t in complete]
    assert len(set(lrs)) == 4  # no parameter set proposed twice
    for t in complete:  # trial k ran in folder k, with its own parameters
        record = read_metrics(sweep / str(t.number))
        assert record["status"] == "completed" and f"optim.lr={t.params['optim.lr']}" in record["overrides"]
        assert record["metrics"]["rot_err_deg"] == pytest.approx(t.value)
    stale = study.user_attrs.get("interrupted_trials", [])
    assert len(trials) == 4 + len(stale)


def test_optuna_stops_when_failures_exceed_max_failure_rate(tmp_path):
    sweep = tmp_path / "sweep"
    out = subprocess.run(
        _optuna(sweep, "task.fail_on_setup=true", "hydra.sweeper.max_failure_rate=0.0"),
        cwd=ROOT,
        env=dwx_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode != 0
    assert "failed (its metrics.json has the error)" in out.stderr
    assert read_metrics(sweep / "0")["status"] == "failed" and not (sweep / "1").exists()


def test_requeued_sweep_job_continues_from_its_checkpoint(tmp_path):
    """SLURM pre-empts a job (SIGTERM) and requeues it: the job continues in its folder (bit-exactness
    of resume itself is tested in tests/runner/test_cli.py)."""
    args = [
        "-m",
        "task=pose_fit",
        "task.batch=32",
        "optim.lr=0.03",
        "loop.steps=100",
        "loop.checkpoint_every=10",
        "logger=none",
    ]
    part = tmp_path / "part"
    cmd = [sys.executable, "-m", "runner.cli", "run", "--config-dir", str(FIXTURES / "configs"), *args]
    cmd += ["task.step_delay_s=0.02", f"hydra.sweep.dir={part}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dwx_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not (part / "0" / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # what SLURM sends on pre-emption
    proc.communicate(timeout=60)
    stopped = read_metrics(part / "0")
    assert stopped["status"] == "interrupted" and 0 < stopped["steps"] < 100

    out = subprocess.run(cmd, cwd=ROOT, env=dwx_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"resumed from {part / '0'} at step {stopped['steps']}" in (part / "0" / "run.log").read_text()
    resumed = read_metrics(part / "0")
    assert resumed["status"] == "completed" and resumed["steps"] == 100 and resumed["metrics"]["rot_err_deg"] < 5.0
