"""depth_from_video on the user's own video without ground-truth depth: it trains, predicts and saves, and
is scored by ``val_photometric``, the photometric reprojection error on the held-out test snippets."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from runner.errors import InputError
from tasks.depth_from_video.data import FramesVideo, StreetVideos, export_splits
from tasks.depth_from_video.models import DepthNet, PoseNet
from tasks.depth_from_video.task import DepthFromVideo
from tests.conftest import RecordingLogger, dwx_env, read_metrics, run_dwx

SIZE = (32, 96)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """One street video of 16 frames at 32x96 written as a user's: frames/*.png, intrinsics.json (and depth/
    and poses.txt, which a run only reads when data.depth_path names the depth)."""
    root = tmp_path_factory.mktemp("video")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DWX_CACHE", str(root / "cache"))
        splits = StreetVideos(train_sequences=1, test_sequences=1, frames_per_sequence=16, image_size=SIZE).load()
    export_splits(splits, root / "export")
    return root / "export" / "train" / splits.train[0].name


def task_on(data, window=(-2, 0, 2)) -> DepthFromVideo:
    """The tiny networks of experiment=depth_tiny on ``data``."""
    return DepthFromVideo(
        data,
        DepthNet([8, 16, 24, 32, 48], [8, 8, 16, 24, 32]),
        PoseNet([8, 16, 32, 32, 64], input_scale=1.0),
        frame_window=list(window),
        batch_size=2,
        scales=[0],
        translation_scale=10.0,
    )


def frames_of(video: Path, with_depth: bool = False, test_fraction: float = 0.375) -> FramesVideo:
    """16 frames: 10 for training, 6 held out (two [-2, 0, 2] snippets)."""
    return FramesVideo(
        str(video / "frames"),
        str(video / "intrinsics.json"),
        image_size=SIZE,
        test_fraction=test_fraction,
        depth_path=str(video / "depth") if with_depth else None,
    )


@pytest.mark.slow  # a CLI subprocess: ~1 s of training, the rest Python, torch and Hydra starting
def test_cli_trains_predicts_and_saves_a_video_without_depth(video, tmp_path):
    run_dir = tmp_path / "run"
    out = run_dwx(
        "run",
        "task=depth_from_video",
        "data=frames",
        f"data.path={video / 'frames'}",
        f"data.intrinsics={video / 'intrinsics.json'}",
        f"data.image_size=[{SIZE[0]},{SIZE[1]}]",
        "data.test_fraction=0.375",
        "task.depth_net.encoder_channels=[8,16,24,32,48]",
        "task.depth_net.decoder_channels=[8,8,16,24,32]",
        "task.pose_net.channels=[8,16,32,32,64]",
        "task.batch_size=2",
        "task.scales=[0]",
        "task.coarse_steps=0",
        "loop.steps=4",
        "loop.eval_every=2",
        "loop.image_every=2",
        f"hydra.run.dir={run_dir}",
        env=dwx_env(DWX_CACHE=str(tmp_path / "cache")),
    )
    assert out.returncode == 0, out.stderr
    record = read_metrics(run_dir)
    assert record["status"] == "completed"
    assert record["main_metric"] == "val_photometric" and record["mode"] == "min"
    assert math.isfinite(record["metrics"]["val_photometric"]) and record["metrics"]["val_photometric"] > 0
    assert "abs_rel" not in record["metrics"] and "ate" not in record["metrics"]
    assert len(list((run_dir / "artifacts" / "test_depth" / "frames_test").glob("*.npy"))) == 6
    assert (run_dir / "artifacts" / "weights.pt").is_file()
    log = out.stdout + out.stderr
    assert "no ground-truth depth: data.depth_path not set, so no abs_rel" in log
    assert "mode=learn trains networks on 10 frames of this one video and scores them on the last 6" in log
    assert "mode=fit is the method" in log  # a user's one video: the hint to the per-video fit


def test_val_photometric_is_lower_for_the_true_depth_than_for_a_constant_one(video):
    """With the ground-truth poses, the true depth explains the held-out targets better than its median."""
    task = task_on(frames_of(video, with_depth=True))
    task.setup(torch.device("cpu"))
    seq = task.splits.test[0]
    poses = np.loadtxt(video / "poses.txt", dtype=np.float32).reshape(-1, 3, 4)[-len(seq) :]  # camera-to-world
    world_from_cam = torch.cat([torch.from_numpy(poses), torch.tensor([[[0, 0, 0, 1.0]]]).expand(len(seq), 1, 4)], 1)
    targets = torch.tensor(task.window.targets(seq))
    src_from_dst = [
        torch.linalg.inv(world_from_cam[targets + o]) @ world_from_cam[targets] for o in task.window.sources
    ]
    constant = torch.full_like(seq.depth, seq.depth[seq.depth > 0].median().item())
    with torch.no_grad():
        true = task.objective.snippet_errors(seq, seq.depth, src_from_dst, task.window)
        wrong = task.objective.snippet_errors(seq, constant, src_from_dst, task.window)
    assert true.shape == (2,)
    assert (true < 0.8 * wrong).all(), (true, wrong)  # 0.127 / 0.123 vs 0.203 / 0.191


def test_without_depth_the_main_metric_is_val_photometric_and_visuals_skip_the_depth_panels(video):
    task = task_on(frames_of(video))
    task.setup(torch.device("cpu"))
    assert task.metric == "val_photometric" and task.mode == "min" and not task.has_ground_truth
    task.loss(0)
    with torch.no_grad():
        metrics = task.evaluate()
        logger = RecordingLogger()
        task.visuals(logger, 0)
    assert set(metrics) == {"val_photometric", "saturated"} and math.isfinite(metrics["val_photometric"])
    tags = set(logger.images_by_tag)
    assert "test/input|prediction" in tags and not any("truth" in t or "abs_rel" in t for t in tags)
    assert task.summary(metrics).startswith(f"val_photometric={metrics['val_photometric']:.4f} (no ground-truth")


def test_with_depth_val_photometric_is_an_extra_metric(video):
    task = task_on(frames_of(video, with_depth=True))
    task.setup(torch.device("cpu"))
    with torch.no_grad():
        metrics = task.evaluate()
    assert task.metric == "abs_rel" and {"abs_rel", "baseline_abs_rel", "val_photometric"} <= set(metrics)
    assert f"val_photometric={metrics['val_photometric']:.4f}" in task.summary(metrics)


def test_a_test_split_shorter_than_the_window_is_refused_before_training(video):
    task = task_on(frames_of(video, test_fraction=0.25))  # 4 held-out frames, the window needs 5
    with pytest.raises(InputError, match=r"window \[-2, 0, 2\] needs 5 test frames .* has 4: raise data.test_fraction"):
        task.setup(torch.device("cpu"))
