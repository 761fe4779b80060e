"""Reading a user's video: frame folders and video files, resizing, and one-line errors for bad input."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest

from runner.errors import InputError
from tasks.physical_params.video import read_video


def _frames(n: int, size: int = 16) -> np.ndarray:
    """n frames (size, size, 3) uint8, a bright square moving right by one pixel per frame."""
    video = np.zeros((n, size, size, 3), dtype=np.uint8)
    for k in range(n):
        video[k, 4:8, 2 + k : 6 + k] = 255
    return video


def test_folder_of_frames_is_read_in_name_order_and_resized(tmp_path):
    for k, frame in enumerate(_frames(5)):
        iio.imwrite(tmp_path / f"frame_{k:03d}.png", frame)
    clip = read_video(tmp_path, frames=4, image_size=8)
    assert clip.shape == (4, 8, 8, 3) and clip.min() >= 0 and clip.max() <= 1
    centre_x = [float((c.mean(-1).sum(0) * np.arange(8)).sum() / c.mean(-1).sum()) for c in clip.numpy()]
    assert np.all(np.diff(centre_x) > 0)  # the square moves right, so the frames are in order


def test_gif_file_is_read(tmp_path):
    path = tmp_path / "clip.gif"
    iio.imwrite(path, _frames(6), duration=50, loop=0)
    clip = read_video(path, frames=6, image_size=16)
    assert clip.shape == (6, 16, 16, 3)
    assert clip[0, 5, 3].min() > 0.9 and clip[0, 12, 12].max() < 0.1


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "no such file or folder"),
        ("empty_folder", "holds no frames"),
        ("too_short", "2 frames, but the scene needs 4"),
        ("garbage", "cannot read it as a video"),
        ("mixed_sizes", "differ in size"),
    ],
)
def test_bad_videos_raise_input_errors(tmp_path, case, message):
    path = tmp_path / case
    if case == "empty_folder":
        path.mkdir()
    elif case == "too_short":
        path.mkdir()
        for k, frame in enumerate(_frames(2)):
            iio.imwrite(path / f"{k}.png", frame)
    elif case == "garbage":
        path = tmp_path / "clip.mp4"
        path.write_bytes(b"not a video at all")
    elif case == "mixed_sizes":
        path.mkdir()
        iio.imwrite(path / "0.png", _frames(1)[0])
        iio.imwrite(path / "1.png", _frames(1, size=12)[0])
    with pytest.raises(InputError, match=message):
        read_video(path, frames=4, image_size=8)


def test_own_video_is_fitted_like_the_generated_one(tmp_path, fit_scene):
    """data=scene_video: the generated projectile video, written as 8-bit PNGs and read back as the user's own
    footage, gives the same speed and angle as fitting the generated frames."""
    import imageio.v3 as iio

    from tests.physical_params.conftest import compose_task

    scene = ["scene=projectile", "scene.image_size=32", "scene.frames=16", "task.pyramid_weights=[1.0,4.0,16.0]",
             "task.horizon_start=null", "scene.params.speed.init=3.2", "scene.params.angle.init=45", "loop.steps=40",
             "task.pixel_noise=0", "logger=none"]
    generated, _ = fit_scene(scene)
    for k, frame in enumerate(generated.target_frames):
        iio.imwrite(tmp_path / f"{k:03d}.png", (frame.numpy() * 255).round().astype(np.uint8))
    own, metrics = fit_scene([*scene, "data=scene_video", f"data.path={tmp_path}"])
    assert own.target_frames.shape == generated.target_frames.shape
    assert (own.target_frames - generated.target_frames).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit rounding only
    assert metrics["rel_err_speed"] < 0.03 and metrics["rel_err_angle"] < 0.03, metrics
    assert compose_task(["data=scene_video"]).data.path is None  # the source asks for a path when it is built
