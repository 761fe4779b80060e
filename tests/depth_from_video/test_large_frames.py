"""Huge frames are resized as they are decoded: the result equals resizing after full decoding, and peak memory
holds one frame at its stored size, not all of them (issue 25)."""

from __future__ import annotations

import json
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from runner.errors import ConfigError
from tasks.depth_from_video.data import FramesVideo, frame_size, read_frames_at, read_image, rescale_K, resize_frames
from tests.conftest import ROOT, dwx_env

BIG = (3000, 4000)  # (h, w) [px]: 36 MB per frame as uint8, 144 MB as float32


@pytest.fixture(scope="module")
def big_frames(tmp_path_factory):
    """A folder of two distinct RGB frames of :data:`BIG` size (ramps: fast to encode and decode)."""
    folder = tmp_path_factory.mktemp("big") / "frames"
    folder.mkdir()
    v, u = np.arange(BIG[0], dtype=np.uint16)[:, None], np.arange(BIG[1], dtype=np.uint16)[None, :]
    for i in range(2):
        rgb = np.stack(np.broadcast_arrays(u % 256, v % 256, (u // 3 + v // 5 + 40 * i) % 256), -1)
        iio.imwrite(folder / f"{i:03d}.png", rgb.astype(np.uint8), compress_level=1)
    return folder


@pytest.mark.parametrize("image_size", [(96, 128), (75, 100)], ids=["antialiased", "whole-factor"])
def test_resizing_while_decoding_equals_resizing_after(big_frames, image_size):
    frames, size = read_frames_at(big_frames, image_size)
    full = torch.stack([read_image(f) for f in sorted(big_frames.iterdir())])
    assert size == BIG and frames.shape == (2, 3, *image_size)
    assert (frames - resize_frames(full, image_size)).abs().max() < 1e-5


def test_intrinsics_are_rescaled_from_the_stored_size(tmp_path, big_frames):
    """K for the stored size (or another size of the same aspect) goes to the training size as before."""
    K = {"fx": 3000.0, "fy": 3000.0, "cx": 999.5, "cy": 749.5, "width": 2000, "height": 1500}
    (tmp_path / "K.json").write_text(json.dumps(K))
    seq = FramesVideo(str(big_frames), str(tmp_path / "K.json"), image_size=(96, 128), test_fraction=0).load().train[0]
    K0 = torch.tensor([[3000.0, 0, 999.5], [0, 3000.0, 749.5], [0, 0, 1]])
    assert torch.allclose(seq.K, rescale_K(rescale_K(K0, (1500, 2000), BIG), BIG, (96, 128)))
    assert seq.K[0, 0].item() == pytest.approx(3000 * 128 / 2000) and seq.K[0, 2].item() == pytest.approx(63.5)


def test_a_height_alone_keeps_the_aspect_ratio(tmp_path, big_frames):
    """data.image_size=H: the width follows the frames' 4:3 (a multiple of 32), K rescaled per axis alike."""
    assert frame_size(96, BIG) == (96, 128) and frame_size(96, (375, 1242)) == (96, 320)
    assert frame_size(96, (360, 540)) == (96, 160) and frame_size(8, (100, 100)) == (8, 32)  # halves round up
    K = {"fx": 3000.0, "fy": 3000.0, "cx": 1999.5, "cy": 1499.5, "width": 4000, "height": 3000}
    (tmp_path / "K.json").write_text(json.dumps(K))
    seq = FramesVideo(str(big_frames), str(tmp_path / "K.json"), image_size=96, test_fraction=0).load().train[0]
    assert seq.image_size == (96, 128) and seq.K[0, 0].item() == pytest.approx(seq.K[1, 1].item())
    for bad in (0, [96], 96.0, "96"):
        with pytest.raises(ConfigError, match="data.image_size must be a height H or"):
            FramesVideo(str(big_frames), image_size=bad)


def test_frame_stride_skips_frames_of_folders_and_videos(tmp_path):
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (7, 40, 60, 3), dtype=np.uint8)
    iio.imwrite(tmp_path / "clip.gif", video)
    (tmp_path / "f").mkdir()
    for i, frame in enumerate(video):
        iio.imwrite(tmp_path / "f" / f"{i:02d}.png", frame)
    for path in (tmp_path / "f", tmp_path / "clip.gif"):
        every, size = read_frames_at(path)
        strided, _ = read_frames_at(path, (20, 30), stride=3)
        assert size == (40, 60) and len(every) == 7
        assert torch.allclose(strided, resize_frames(every[::3], (20, 30)), atol=1e-6)


_PEAK = """
import resource, sys
from tasks.depth_from_video.data import read_frames_at
frames, size = read_frames_at(sys.argv[1], (96, 128))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # kB on Linux
"""


def _peak_mb(folder) -> float:
    out = subprocess.run([sys.executable, "-c", _PEAK, str(folder)], cwd=ROOT, env=dwx_env(), capture_output=True,
                         text=True, timeout=300, check=True)
    return int(out.stdout.strip()) / 1024


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in kB on Linux")
def test_peak_memory_does_not_grow_with_the_number_of_frames(tmp_path, big_frames):
    many = tmp_path / "many"
    many.mkdir()
    for i in range(6):  # six frames: the two files, three times each
        (many / f"{i:03d}.png").symlink_to(big_frames / f"{i % 2:03d}.png")
    two, six = _peak_mb(big_frames), _peak_mb(many)
    # Decoding all six at full size before resizing: 4 more frames of 144 MB each as float (and the stack).
    assert six - two < 60, f"peak {two:.0f} MB for 2 frames, {six:.0f} MB for 6"


def test_an_mp4_video_is_read_frame_by_frame_at_the_training_size(tmp_path):
    """MP4 needs the `video` extra (imageio-ffmpeg), which CI installs: a missing plugin fails here, no skip."""
    frames = (np.random.default_rng(0).random((12, 48, 64, 3)) * 255).astype(np.uint8)
    path = tmp_path / "clip.mp4"
    iio.imwrite(path, frames, fps=10, codec="libx264")
    read, size = read_frames_at(path, (24, 32), stride=2)
    assert size == (48, 64) and read.shape == (6, 3, 24, 32)
    assert 0 <= float(read.min()) and float(read.max()) <= 1
