"""Faults that must never crash silently or lose work: diverged states, failed resumes, shared folders,
signals during set-up and sweeps, skipped steps, stale temporary files, wrapped errors."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from runner.checkpoint import all_finite, remove_stale_temporaries
from runner.errors import NonFiniteError
from runner.geometry.cameras import PinholeCamera
from runner.geometry.primitives import icosphere
from runner.geometry.warping import warp_frame
from runner.render.soft_mesh import SoftMeshRenderer
from runner.run_folder import _claimed, unique_dir
from tests.conftest import FIXTURES, ROOT, dwx_env, read_metrics, run_dwx


# ---------------------------------------------------------------- native kernels and non-finite inputs
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_warp_frame_refuses_a_non_finite_grid_instead_of_crashing_in_backward(bad):
    image = torch.rand(1, 3, 4, 5, requires_grad=True)
    depth = torch.ones(1, 1, 4, 5, requires_grad=True)
    pose = torch.eye(4)[None].clone()
    pose[0, 0, 3] = bad  # a diverged translation
    K = torch.tensor([[[4.0, 0, 2], [0, 4.0, 1.5], [0, 0, 1]]])
    with pytest.raises(NonFiniteError, match="non-finite sampling grid"):
        warp_frame(image, depth, pose, K, padding="border")


def test_soft_rasteriser_refuses_non_finite_vertices_and_cameras():
    sphere = icosphere(1)
    K = PinholeCamera.intrinsics_from_fov(30.0, (16, 16))
    cameras = PinholeCamera(K, PinholeCamera.orbit(torch.tensor([0.0]), torch.tensor([0.0]), 3.0), (16, 16))
    renderer = SoftMeshRenderer(sigma=1e-4, faces_per_pixel=4, shading="silhouette")
    verts = sphere.verts[0].clone()
    verts[3, 2] = math.nan
    with pytest.raises(NonFiniteError, match="non-finite mesh vertex"):
        renderer(sphere.with_verts([verts]), cameras)
    bad_K = K.clone()
    bad_K[0, 0, 0] = math.inf
    with pytest.raises(NonFiniteError, match="non-finite projected vertex"):
        renderer(sphere, PinholeCamera(bad_K, cameras.cam_from_world, (16, 16)))


def test_soft_rasteriser_survives_huge_finite_coordinates():
    sphere = icosphere(1)
    K = PinholeCamera.intrinsics_from_fov(30.0, (16, 16))
    cameras = PinholeCamera(K, PinholeCamera.orbit(torch.tensor([0.0]), torch.tensor([0.0]), 3.0), (16, 16))
    verts = sphere.verts[0].clone()
    verts[0] = torch.tensor([1e30, -1e30, 0.0])  # far outside the image: bounding boxes must not overflow
    alpha = SoftMeshRenderer(sigma=1e-4, faces_per_pixel=4, shading="silhouette")(sphere.with_verts([verts]), cameras)
    assert torch.isfinite(alpha.alpha).all()


# ---------------------------------------------------------------- the last good checkpoint
def test_diverged_parameters_never_reach_the_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    # SGD at 1e38 turns the first finite gradient into infinite parameters; the next loss is not finite
    out = run_dwx("run", "task=pose_fit", "optim=sgd", "optim.lr=1e38", "loop.checkpoint_every=1",
                  f"hydra.run.dir={run_dir}", toy=True)
    assert out.returncode == 1
    m = read_metrics(run_dir)
    assert m["status"] == "failed" and "checkpoints/last.pt holds nothing" in m["error"], m["error"]
    assert not (run_dir / "checkpoints" / "last.pt").exists()


def test_divergence_after_a_checkpoint_keeps_that_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    out = run_dwx("run", "task=pose_fit", "task.nan_at_step=7", "loop.checkpoint_every=3",
                  f"hydra.run.dir={run_dir}", toy=True)
    assert out.returncode == 1
    m = read_metrics(run_dir)
    assert "checkpoints/last.pt holds the state after 7 steps" in m["error"], m["error"]
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 7 and all(torch.isfinite(state["task"][k]).all() for k in ("rot", "t"))


def test_lbfgs_message_names_the_checkpoint_it_really_has(tmp_path):
    run_dir = tmp_path / "run"
    out = run_dwx("run", "task=pose_fit", "optim=lbfgs", "task.nan_at_step=2", "loop.checkpoint_every=100",
                  f"hydra.run.dir={run_dir}", toy=True)
    assert out.returncode == 1
    assert "checkpoints/last.pt holds nothing (no checkpoint was written before)" in read_metrics(run_dir)["error"]


# ---------------------------------------------------------------- resume never erases a record
def test_failed_resume_keeps_the_completed_record(tmp_path):
    run_dir = tmp_path / "run"
    assert run_dwx("run", "task=pose_fit", "loop.steps=6", f"hydra.run.dir={run_dir}", toy=True).returncode == 0
    before = read_metrics(run_dir)
    for n, bad_resume in enumerate((["loop.ema_decay=0.9"], ["optim=sgd"]), start=1):  # a setting the checkpoint
        out = run_dwx("run", f"resume={run_dir}", *bad_resume, toy=True)  # lacks; another optimiser
        assert out.returncode == 2, out.stderr
        assert read_metrics(run_dir) == before
        attempts = list((run_dir / "attempts").glob("*.json"))
        assert len(attempts) == n and all(json.loads(a.read_text())["status"] == "failed" for a in attempts)
        assert "is unchanged" in out.stderr


def test_successful_resume_of_an_interrupted_run_leaves_no_attempt_file(tmp_path):
    run_dir = tmp_path / "run"
    out = run_dwx("run", "task=pose_fit", "task.nan_at_step=4", "loop.steps=8", "loop.checkpoint_every=2",
                  f"hydra.run.dir={run_dir}", toy=True)
    assert read_metrics(run_dir)["status"] == "failed", out.stderr
    out = run_dwx("run", f"resume={run_dir}", "task.nan_at_step=null", toy=True)
    assert out.returncode == 0, out.stderr
    m = read_metrics(run_dir)
    assert m["status"] == "completed" and m["steps"] == 8
    assert not (run_dir / "attempts").exists()


# ---------------------------------------------------------------- one folder per run
def test_unique_dir_picks_a_new_name_when_taken(tmp_path):
    base = str(tmp_path / "outputs" / "task" / "2026-01-01_00-00-00")
    first = unique_dir(base)
    _claimed.clear()  # as another process would see it
    second = unique_dir(base)
    assert first == base and second == base + "_2"
    assert unique_dir(base) == second  # resolved again in the same process: the same folder


def test_runs_started_together_get_their_own_folders(tmp_path):
    cmd = [sys.executable, "-m", "runner.cli", "run", "--config-dir", str(FIXTURES / "configs"), "task=pose_fit",
           "loop.steps=3", "logger=none", f"paths.output_root={tmp_path}"]
    procs = [subprocess.Popen([*cmd, f"seed={i}"], cwd=ROOT, env=dwx_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for i in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    folders = sorted((tmp_path / "pose_fit").iterdir())
    assert len(folders) == 3
    assert sorted(read_metrics(f)["overrides"][-1] for f in folders) == ["seed=0", "seed=1", "seed=2"]


# ---------------------------------------------------------------- signals
def _start(args: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "runner.cli", "run", "--config-dir", str(FIXTURES / "configs"), *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=dwx_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_setup_records_interrupted(tmp_path, sig):
    run_dir = tmp_path / "run"
    proc = _start(["task=pose_fit", "task.setup_delay_s=30", f"hydra.run.dir={run_dir}"])
    _wait_for(run_dir / "metrics.json")
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    m = read_metrics(run_dir)
    assert m["status"] == "interrupted" and m["steps"] == 0


def test_one_signal_stops_a_sequential_sweep_and_a_rerun_finishes_it(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "task=pose_fit", "task.step_delay_s=0.02", "loop.steps=30", "loop.checkpoint_every=5",
            "seed=0,1,2", f"hydra.sweep.dir={sweep}"]
    proc = _start(args)
    _wait_for(sweep / "0" / "checkpoints" / "last.pt")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert read_metrics(sweep / "0")["status"] == "interrupted"
    assert not (sweep / "1").exists() and not (sweep / "2").exists()
    assert "sweep stopped" in out + err

    out = run_dwx("run", *args, toy=True)
    assert out.returncode == 0, out.stderr
    assert [read_metrics(sweep / str(i))["status"] for i in range(3)] == ["completed"] * 3
    first = read_metrics(sweep / "0")
    out = run_dwx("run", *args, toy=True)  # everything done: every job is skipped
    assert out.returncode == 0 and read_metrics(sweep / "0") == first
    assert (out.stdout + out.stderr).count("already completed") == 3


# ---------------------------------------------------------------- skipped steps
def test_skipping_most_steps_fails_the_run_and_records_the_count(tmp_path):
    run_dir = tmp_path / "run"
    out = run_dwx("run", "task=pose_fit", "task.nan_at_step=5", "loop.nonfinite=skip", "loop.steps=20",
                  f"hydra.run.dir={run_dir}", toy=True)
    assert out.returncode == 1
    m = read_metrics(run_dir)
    assert m["status"] == "failed" and m["skipped_steps"] == 3  # 3 > 0.1 * 20
    assert "loop.max_skipped_fraction" in m["error"]


def test_skipped_steps_within_the_allowed_share_are_recorded(tmp_path):
    run_dir = tmp_path / "run"
    out = run_dwx("run", "task=pose_fit", "task.nan_at_step=18", "loop.nonfinite=skip", "loop.steps=20",
                  f"hydra.run.dir={run_dir}", toy=True)
    assert out.returncode == 0, out.stderr
    m = read_metrics(run_dir)
    assert m["status"] == "completed" and m["skipped_steps"] == 2


# ---------------------------------------------------------------- stale temporaries, wrapped errors
def test_stale_temporary_files_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".last.pt.tmp{dead.pid}"
    live = tmp_path / f".metrics.json.tmp{os.getppid()}"
    for f in (stale, live):
        f.write_bytes(b"half a file")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and live.exists()


def test_instantiate_error_keeps_its_cause_in_the_record(tmp_path):
    run_dir = tmp_path / "run"
    out = run_dwx("run", "task=pose_fit", "+task.no_such_argument=1", f"hydra.run.dir={run_dir}", toy=True)
    assert out.returncode == 1
    error = read_metrics(run_dir)["error"]
    assert "PointCloudPose" in error and "TypeError" in error and "no_such_argument" in error, error


@pytest.mark.parametrize("diverge", [["optim.lr=1e30"], ["+optim.groups.pose.lr=1e6"]], ids=["all", "posenet"])
def test_a_diverging_depth_run_fails_cleanly_and_keeps_only_finite_state(tmp_path, diverge):
    """A diverged PoseNet used to crash the process in grid_sample's backward (SIGSEGV, status `running`),
    and lr=1e30 used to leave infinite BatchNorm buffers in last.pt."""
    run_dir = tmp_path / "run"
    out = run_dwx("run", "experiment=depth_tiny", *diverge, "loop.steps=30", "loop.checkpoint_every=1",
                  f"hydra.run.dir={run_dir}")
    assert out.returncode == 1, out.stderr[-2000:]
    m = read_metrics(run_dir)
    assert m["status"] == "failed" and "non-finite" in m["error"], m["error"]
    ckpt = run_dir / "checkpoints" / "last.pt"
    if ckpt.exists():
        assert all_finite(torch.load(ckpt, weights_only=True))
