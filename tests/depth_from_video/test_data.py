"""Video sources of depth_from_video: embedded streets, user frames, 7-Scenes, KITTI layout, export."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from runner.errors import ConfigError, InputError
from tasks.depth_from_video.data import (
    FramesVideo,
    KittiRaw,
    SevenScenes,
    StreetVideos,
    export_splits,
    read_frames_at,
    read_intrinsics,
    rescale_K,
    resize_frames,
)
from tests.conftest import shared_data


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DWX_CACHE", str(tmp_path / "cache"))


def tiny_streets(seed=0):
    return StreetVideos(train_sequences=1, test_sequences=1, frames_per_sequence=4, image_size=(24, 64), seed=seed)


def test_the_configured_renderer_draws_the_streets():
    """renderer.* settings reach the videos (they were ignored): other lighting, other frames, the same depth."""
    from runner.render.raycast import RaycastRenderer

    default = tiny_streets()
    flat = StreetVideos(train_sequences=1, test_sequences=1, frames_per_sequence=4, image_size=(24, 64),
                        renderer=RaycastRenderer(ambient=1.0, shadows=False))
    assert default.key() != flat.key()  # cached apart
    a, b = default.load().train[0], flat.load().train[0]
    assert torch.equal(a.depth, b.depth) and (a.frames - b.frames).abs().mean() > 0.05


def test_streets_are_deterministic_cached_and_seeded(tmp_path):
    a, b, c = tiny_streets(0).load(), tiny_streets(0).load(), tiny_streets(1).load()
    seq = a.train[0]
    assert seq.frames.shape == (4, 3, 24, 64) and seq.depth.shape == (4, 24, 64)
    assert seq.cam_from_world.shape == (4, 4, 4) and len(a.test) == 1
    assert torch.equal(seq.frames, b.train[0].frames) and not torch.equal(seq.frames, c.train[0].frames)
    assert not torch.equal(seq.frames, a.test[0].frames)  # test videos come from other seeds
    assert (seq.depth > 0).all() and seq.depth.max() < 100  # every pixel hits the street (back wall caps depth)
    assert len(list((tmp_path / "cache").rglob("*.pt"))) == 2


def test_street_depth_is_consistent_with_poses():
    """A ground pixel's depth back-projected through the pose lands on the ground plane y = 0."""
    seq = tiny_streets().load().train[0]
    from runner.geometry.cameras import PinholeCamera

    cam = PinholeCamera(seq.K[None], seq.cam_from_world[:1], seq.image_size)
    v, u = 23, 32  # bottom centre: the road
    p = cam.unproject(torch.tensor([[[u, v]]], dtype=torch.float32), seq.depth[:1, v, u][None])
    assert abs(p[0, 0, 1].item()) < 1e-3


def test_export_then_kitti_layout_round_trip(tmp_path):
    splits = tiny_streets().load()
    export_splits(splits, tmp_path / "out")
    seq = splits.train[0]
    assert (tmp_path / "out" / "train" / seq.name / "frames" / "000003.png").is_file()
    assert np.load(tmp_path / "out" / "train" / seq.name / "depth" / "000000.npy").shape == (24, 64)
    lines = (tmp_path / "out" / "kitti" / "splits" / "train_files.txt").read_text().split("\n")
    assert lines[0] == "2011_01_01/2011_01_01_drive_0000_sync 0 l"
    back = KittiRaw(str(tmp_path / "out" / "kitti"), image_size=(24, 64)).load()
    assert torch.allclose(back.train[0].frames, seq.frames, atol=0.5 / 255)
    assert torch.allclose(back.train[0].depth, seq.depth, atol=1 / 256)  # KITTI stores depth x 256
    assert torch.allclose(back.train[0].K, seq.K)
    assert torch.allclose(back.train[0].cam_from_world, seq.cam_from_world, atol=1e-5)


def _write_frames(folder, n, size=(24, 64), seed=0):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        iio.imwrite(folder / f"{i:04d}.png", rng.integers(0, 255, (*size, 3), dtype=np.uint8))


def _write_intrinsics(path, width=64, height=24):
    path.write_text(
        json.dumps(
            {"fx": 30.0, "fy": 30.0, "cx": (width - 1) / 2, "cy": (height - 1) / 2, "width": width, "height": height}
        )
    )
    return path


def test_frames_folder_rescales_intrinsics(tmp_path):
    _write_frames(tmp_path / "f", 10)
    src = FramesVideo(
        str(tmp_path / "f"), str(_write_intrinsics(tmp_path / "k.json")), image_size=(48, 128), test_fraction=0.3
    )
    splits = src.load()
    assert len(splits.train[0]) == 7 and len(splits.test[0]) == 3
    K = splits.train[0].K
    assert K[0, 0].item() == pytest.approx(60.0) and K[0, 2].item() == pytest.approx(63.5)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"fx": 1.0, "fy": 1.0}, "lacks cx, cy, width, height"),
    ],
)
def test_bad_intrinsics(tmp_path, content, message):
    path = tmp_path / "k.yaml"
    path.write_text(json.dumps(content))
    with pytest.raises(InputError, match=message):
        read_intrinsics(path)


def test_intrinsics_with_another_aspect_ratio_are_rejected(tmp_path):
    _write_frames(tmp_path / "f", 6)
    src = FramesVideo(str(tmp_path / "f"), str(_write_intrinsics(tmp_path / "k.json", 64, 64)), image_size=(24, 64))
    with pytest.raises(InputError, match="refer to 64x64 images but the frames are 64x24"):
        src.load()


def test_frames_of_different_sizes_and_unreadable_frames(tmp_path):
    _write_frames(tmp_path / "f", 3)
    iio.imwrite(tmp_path / "f" / "0009.png", np.zeros((10, 10, 3), dtype=np.uint8))
    with pytest.raises(InputError, match="frames differ in size"):
        read_frames_at(tmp_path / "f")
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "0000.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read frame"):
        read_frames_at(tmp_path / "g")
    with pytest.raises(InputError, match="not found"):
        read_frames_at(tmp_path / "missing")


def test_missing_required_keys_are_config_errors():
    with pytest.raises(ConfigError, match="data.path"):
        FramesVideo(None, None)
    with pytest.raises(ConfigError, match="data.root"):
        SevenScenes(None)
    with pytest.raises(ConfigError, match=r"data=streets draws its frames at data.image_size=\[H, W\]"):
        StreetVideos(image_size=64)  # a height alone: the streets have no stored frames to take an aspect from


def test_seven_scenes_real_clip():
    root = shared_data("7scenes_redkitchen")
    seq = SevenScenes(str(root), image_size=(96, 128), frame_stride=2).load().train[0]
    assert seq.frames.shape == (30, 3, 96, 128)
    assert SevenScenes(str(root), image_size=96).load().train[0].image_size == (96, 128)  # 640x480
    assert seq.K[0, 0].item() == pytest.approx(585 * 128 / 640)
    valid = seq.depth[seq.depth > 0]
    assert 0.5 < valid.min() and valid.max() < 5.0  # metres; 65535 invalid markers removed
    step = (seq.cam_from_world[1] @ torch.linalg.inv(seq.cam_from_world[0]))[:3, 3].norm()
    assert 0.001 < step.item() < 0.05  # about 1 cm between strided frames


@pytest.mark.parametrize("size, whole", [((48, 160), True), ((64, 160), False), ((80, 256), False)])
def test_resized_frames_keep_pixel_centres_where_the_intrinsics_put_them(size, whole):
    """A ramp in x and y: the resized value at pixel (u', v') is the source coordinate that rescale_K maps
    there, in the interior (shrinking by whole factors averages blocks, by others samples with antialiasing)."""
    H, W = 96, 320
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    ramp = torch.stack([u / W, v / H, 0 * u])[None]  # in [0, 1): no clamping
    out = resize_frames(ramp, size)
    K = torch.tensor([[100.0, 0, 159.5], [0, 100.0, 47.5], [0, 0, 1]])
    Kr = rescale_K(K, (H, W), size)
    sx, sy = Kr[0, 0] / K[0, 0], Kr[1, 1] / K[1, 1]
    vr, ur = torch.meshgrid(torch.arange(size[0], dtype=torch.float32), torch.arange(size[1], dtype=torch.float32),
                            indexing="ij")
    expect_u, expect_v = (ur - (Kr[0, 2] - sx * K[0, 2])) / sx, (vr - (Kr[1, 2] - sy * K[1, 2])) / sy
    inner = (slice(2, -2), slice(2, -2))
    tol = 1e-4 if whole else 0.1  # source pixels (area averaging by 1.5: 0.25)
    assert (out[0, 0][inner] * W - expect_u[inner]).abs().max() < tol
    assert (out[0, 1][inner] * H - expect_v[inner]).abs().max() < tol
