"""A real SLURM sweep: jobs go through `hydra/launcher=slurm` (submitit) to the loopback cluster.

Start the cluster first with ``scripts/slurm_cluster.sh start`` and point the clients at its own config with
``eval "$(scripts/slurm_cluster.sh env)"`` (SLURM_CONF; CI does both, see .ci/run).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import read_metrics, run_dwx


def _cluster_problem() -> str | None:
    """Why no SLURM test can run here, or None when a cluster answers."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "slurm is not installed (apt-get install -y slurm-wlm munge)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: no slurmctld answers"
    if out.returncode != 0 or not out.stdout.strip():
        return (f"no SLURM cluster answers ({out.stderr.strip()[:200]}); run scripts/slurm_cluster.sh start and "
                'eval "$(scripts/slurm_cluster.sh env)"')
    return None


@pytest.mark.slurm
def test_sweep_through_submitit_slurm_writes_every_jobs_metrics(tmp_path):
    problem = _cluster_problem()
    if problem is not None:
        pytest.skip(problem)
    sweep = tmp_path / "sweep"
    out = run_dwx(
        "run",
        "-m",
        "task=pose_fit",
        "hydra/launcher=slurm",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=1",
        "hydra.launcher.timeout_min=5",
        "loop.steps=20",
        "logger=none",
        "optim.lr=0.01,0.05",
        "task.fail_on_setup=false,true",
        f"hydra.sweep.dir={sweep}",
        toy=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    records = [read_metrics(sweep / str(i)) for i in range(4)]
    assert sorted(r["status"] for r in records) == ["completed", "completed", "failed", "failed"]
    for r in records:
        if r["status"] == "completed":
            assert r["steps"] == 20 and r["metrics"]["rot_err_deg"] >= 0
        else:
            assert r["error"] == "setup failed on purpose"
    submissions = list((sweep / ".submitit").glob("*/*_submission.sh"))
    assert submissions and "#SBATCH --cpus-per-task=1" in submissions[0].read_text()
