"""Data-parallel training: 2 processes (torchrun, gloo on the CPU) match one process on the same global batch."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import torch

from runner.distributed import DistInfo, average_gradients, check_data_parallel
from runner.errors import ConfigError
from runner.task import Task
from tests.conftest import FIXTURES, ROOT, dwx_env, read_metrics, run_dwx

COMMON = ["task=pose_fit", "task.batch=64", "optim.lr=0.03", "loop.steps=40", "loop.eval_every=20", "logger=none"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*overrides: str, toy: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=2 -m runner.cli run OVERRIDES`` on this machine, gloo on the CPU."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "-m",
        "runner.cli",
        "run",
        *(["--config-dir", str(FIXTURES / "configs")] if toy else []),
        *overrides,
    ]
    env = env or dwx_env()
    env["GLOO_SOCKET_IFNAME"] = "lo"
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_two_gloo_processes_match_one_process_on_the_same_global_batch(tmp_path):
    single = tmp_path / "single"
    out = run_dwx("run", *COMMON, f"hydra.run.dir={single}", toy=True)
    assert out.returncode == 0, out.stderr

    ddp = tmp_path / "ddp"
    out = torchrun(*COMMON, f"hydra.run.dir={ddp}", toy=True)
    assert out.returncode == 0, out.stderr[-3000:]
    one, two = read_metrics(single), read_metrics(ddp)
    assert two["status"] == "completed" and two["steps"] == 40
    assert two["metrics"]["rot_err_deg"] == pytest.approx(one["metrics"]["rot_err_deg"], rel=1e-4, abs=1e-5)
    a = torch.load(single / "checkpoints" / "last.pt", weights_only=True)["task"]
    b = torch.load(ddp / "checkpoints" / "last.pt", weights_only=True)["task"]
    for key in ("rot", "t"):
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)


def test_a_non_finite_loss_on_one_rank_is_skipped_by_every_rank(tmp_path):
    """Rank 1 alone gets a NaN loss: both ranks skip the step together (none waits in the all-reduce)."""
    run_dir = tmp_path / "ddp"
    out = torchrun(
        *COMMON[:-2],
        "loop.steps=6",
        "logger=none",
        "task.nan_at_step=3",
        "task.nan_rank=1",
        "loop.nonfinite=skip",
        f"hydra.run.dir={run_dir}",
        toy=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    record = read_metrics(run_dir)
    assert record["status"] == "completed" and record["steps"] == 6
    log = (run_dir / "run.log").read_text()
    assert log.count("on 1 of 2 processes; step skipped") == 3, log  # rank 0 logs steps 3, 4, 5
    assert "loss/fit=nan" in log  # rank 1 names its terms (warnings of other ranks still reach run.log)


class _Batch(Task):
    metric, mode = "x", "min"

    def param_groups(self):
        return {}

    def loss(self, step):
        return {}

    def evaluate(self):
        return {"x": 0.0}


def test_shard_splits_the_global_batch_into_contiguous_equal_shares():
    task = _Batch()
    batch = torch.arange(8)
    assert torch.equal(task.shard(batch), batch)
    task.rank, task.world_size = 1, 2
    assert task.shard(batch).tolist() == [4, 5, 6, 7]
    task.world_size = 3
    with pytest.raises(ConfigError, match="does not split evenly over 3 processes"):
        task.shard(batch)


def test_check_data_parallel_names_what_cannot_run_on_several_processes():
    task = _Batch()
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(ConfigError, match="does not support data-parallel"):
        check_data_parallel(task, optimizer, DistInfo(rank=1, world_size=3))
    task.data_parallel, task.batch_size = True, 6
    with pytest.raises(ConfigError, match=r"task.batch_size=6 \(the global batch\) does not split evenly over 4"):
        check_data_parallel(task, optimizer, DistInfo(rank=1, world_size=4))
    check_data_parallel(task, optimizer, DistInfo(rank=1, world_size=3))
    assert (task.rank, task.world_size) == (1, 3)


def test_average_gradients_is_a_no_op_in_one_process():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    assert average_gradients([p], world_size=1) == (0, None)
    assert p.grad.tolist() == [2.0, 2.0, 2.0]
