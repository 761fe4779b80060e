"""depth_from_video ``mode=fit``: one video's depth, camera path and focal length by photometric bundle adjustment."""

from __future__ import annotations

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from runner.geometry.cameras import PinholeCamera
from runner.render.raycast import RaycastRenderer
from tasks.depth_from_video.data import Sequence, Splits, StreetVideos, VideoSource
from tasks.depth_from_video.fit import CameraPath, Exposure, FitVideo
from tasks.depth_from_video.metric_scale import path_length
from tasks.depth_from_video.streets import forward_camera_path, make_street_scene
from tests.conftest import dwx_env, read_metrics, run_dwx

SIZE = (32, 96)


class OneVideo(VideoSource):
    """A data source of one in-memory video."""

    def __init__(self, seq: Sequence):
        self.seq = seq

    def load(self) -> Splits:
        return Splits([self.seq], [self.seq])


def street_video(frames: int, size: tuple[int, int], focal: float | None = None) -> Sequence:
    """A street video ray cast with square pixels of ``focal`` [px] (default: the streets' fx), the camera moving
    0.1 m per frame (a walking pace: the fit starts every camera at frame 0's, see docs/depth_from_video_fit.md)."""
    H, W = size
    f = focal or 0.58 * W
    K = PinholeCamera.intrinsics(f, f, (W - 1) / 2, (H - 1) / 2)[0]
    scene = make_street_scene(7, length=60.0)
    poses = forward_camera_path(7, frames, speed=0.1, yaw_rate=0.02)
    with torch.no_grad():
        r = RaycastRenderer(background=(0.55, 0.7, 0.9), supersample=2)(
            scene, PinholeCamera(K.expand(frames, 3, 3), poses, size)
        )
    return Sequence("street", r.rgb.clamp(0, 1).permute(0, 3, 1, 2).contiguous(), K, r.depth, poses)


def fit(task: FitVideo, steps: int, lr: float = 0.01) -> dict[str, float]:
    task.setup(torch.device("cpu"))
    task.plan(steps)
    groups = task.param_groups()
    opt = torch.optim.Adam(
        [
            {"params": groups["depth"], "lr": lr},
            {"params": groups["pose"], "lr": 1e-3},
            {"params": [p for p in groups["intrinsics"] if p.requires_grad], "lr": 1e-3},
            {"params": groups["exposure"], "lr": lr},
        ]
    )
    for step in range(steps):
        loss = sum(task.loss(step).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return task.evaluate()


@pytest.fixture(scope="module")
def street() -> Sequence:
    return street_video(12, SIZE)



def test_the_gauge_holds_frame_0s_mean_log_depth_at_init_depth(street):
    task = FitVideo(OneVideo(street), init_depth=2.0)
    fit(task, steps=5)
    assert task.depth_maps()[0].log().mean().item() == pytest.approx(math.log(2.0), abs=1e-4)


@pytest.mark.slow  # a CLI subprocess
def test_cli_writes_metrics_depth_maps_trajectory_and_intrinsics(tmp_path):
    run = run_dwx(
        "run",
        "task=depth_from_video",
        "mode=fit",
        "data.train_sequences=1",
        "data.test_sequences=1",
        "data.frames_per_sequence=8",
        "data.image_size=[32,96]",
        "loop.steps=20",
        "loop.time_budget=null",
        "threads=1",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
        env=dwx_env(DWX_CACHE=str(tmp_path / "cache")),
    )
    assert run.returncode == 0, run.stderr[-2000:]
    record = read_metrics(tmp_path / "run")
    assert record["status"] == "completed" and "abs_rel" in record["metrics"] and "focal_px" in record["metrics"]
    art = tmp_path / "run" / "artifacts"
    assert len(list((art / "depth").glob("*/0000*.npy"))) == 8
    rows = [line.split() for line in (art / "trajectory.txt").read_text().splitlines() if not line.startswith("#")]
    assert len(rows) == 8 and all(len(r) == 8 for r in rows)
    assert np.allclose([float(v) for v in rows[0][1:]], [0, 0, 0, 0, 0, 0, 1])  # frame 0 is the world
    assert set(json.loads((art / "intrinsics.json").read_text())) >= {"fx", "fy", "cx", "cy", "width", "height"}
    assert (art / "points.ply").read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")
    assert "fitted depth in the fit's own scale" in (art / "README.txt").read_text()  # no known length: no metres


def test_a_one_frame_video_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "frames").mkdir()
    iio.imwrite(tmp_path / "frames" / "0.png", np.zeros((32, 96, 3), np.uint8))
    run = run_dwx(
        "run",
        "task=depth_from_video",
        "mode=fit",
        "data=frames",
        f"data.path={tmp_path / 'frames'}",
        "data.image_size=[32,96]",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert run.returncode == 2, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "1 frame" in lines[0], run.stderr


def test_learn_mode_needs_intrinsics_and_says_so(tmp_path):
    (tmp_path / "frames").mkdir()
    run = run_dwx(
        "run",
        "task=depth_from_video",
        "data=frames",
        f"data.path={tmp_path / 'frames'}",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert run.returncode == 2 and "data.intrinsics" in run.stderr, run.stderr[-2000:]


def test_street_data_default_fits_a_held_out_video(tmp_path, monkeypatch):
    monkeypatch.setenv("DWX_CACHE", str(tmp_path / "cache"))
    data = StreetVideos(train_sequences=1, test_sequences=1, frames_per_sequence=6, image_size=SIZE)
    task = FitVideo(data)
    task.setup(torch.device("cpu"))
    assert task.seq.name == "street_test_00" and len(task.seq) == 6


@pytest.mark.parametrize("hint", ["camera_height", "baseline_m"])
def test_one_known_length_puts_the_fit_in_metres(street, hint, tmp_path, monkeypatch):
    """A fit that found the street's depth and path in units of 25 cm: the camera's 1.5 m above the road, or the
    length of its path, gives the factor 4 back, the metrics without per-image scaling match the truth, and the
    saved depth maps and trajectory are in metres."""
    truth = street.cam_from_world @ torch.linalg.inv(street.cam_from_world[0])
    in_quarters = truth.clone()
    in_quarters[:, :3, 3] *= 4.0
    source = OneVideo(street)
    source.set_metric_hints(1.5 if hint == "camera_height" else None,
                            path_length(truth) if hint == "baseline_m" else None)
    task = FitVideo(source, intrinsics="known")
    task.setup(torch.device("cpu"))
    monkeypatch.setattr(task, "depth_maps", lambda: street.depth * 4.0)
    monkeypatch.setattr(CameraPath, "forward", lambda self: in_quarters)
    metrics = task.evaluate()
    tolerance = 0.05 if hint == "camera_height" else 1e-4  # the street's camera bobs and pitches over a kerbed road
    assert metrics["metric_scale"] == pytest.approx(0.25, rel=tolerance)
    assert metrics["scale_ratio"] == pytest.approx(1.0, rel=tolerance) and metrics["abs_rel_metric"] < tolerance
    task.save(tmp_path)
    saved = np.load(sorted((tmp_path / "depth").glob("*/0000*.npy"))[0])
    np.testing.assert_allclose(saved, street.depth[0].numpy() * 4.0 * metrics["metric_scale"], rtol=1e-5)
    rows = [line.split() for line in (tmp_path / "trajectory.txt").read_text().splitlines() if line[0] != "#"]
    travelled = np.linalg.norm(np.diff(np.array([[float(v) for v in r[1:4]] for r in rows]), axis=0), axis=1).sum()
    assert travelled == pytest.approx(path_length(truth), rel=tolerance)


def test_the_exposure_model_recovers_each_frames_gain_and_offset(street):
    """Frames of one radiance under per-frame, per-channel gains and offsets: fitting the Exposure maps so that
    every frame, mapped into every other's exposure, matches it recovers the gains and offsets relative to frame 0."""
    g = torch.Generator().manual_seed(1)
    T = 5
    gain = 0.6 + 0.8 * torch.rand(T, 3, generator=g)
    offset = 0.1 * (torch.rand(T, 3, generator=g) - 0.5)
    radiance = street.frames[:1].expand(T, -1, -1, -1)
    frames = radiance * gain[..., None, None] + offset[..., None, None]
    exposure = Exposure(T)
    opt = torch.optim.Adam(exposure.parameters(), lr=0.02)
    source, target = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
    source, target = source.flatten(), target.flatten()
    for _ in range(600):
        loss = (exposure(frames[source], source, target) - frames[target]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.testing.assert_close(exposure.log_gain.exp(), gain[1:] / gain[0], atol=0.02, rtol=0.02)
    torch.testing.assert_close(exposure.bias, offset[1:] - offset[0] * gain[1:] / gain[0], atol=0.01, rtol=0.0)
