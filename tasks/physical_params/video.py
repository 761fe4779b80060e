"""A user's video of a physical_params scene (``data=scene_video data.path=...``): a folder of frames or a video
file, read through imageio.

Frames are converted to RGB in [0, 1], resized (area filter) to the scene's square image size and cut to its
number of frames. Anything that cannot be read raises an :class:`runner.errors.InputError` naming the path and
the fix, which the CLI prints as one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from runner.errors import InputError

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class SceneVideo:
    """The data source of ``data=scene_video``: the user's own footage of a scene, fitted instead of the video
    that physical_params otherwise generates from the scene's true parameters.

    Args:
        path: a folder of images (sorted by file name) or a video file; the scene's camera keys (``scene.eye``,
            ``scene.at``, ``scene.fov_deg``), ``scene.frames`` and ``scene.fps`` must describe the footage.
    """

    def __init__(self, path: str):
        if path is None:
            raise InputError("data=scene_video needs data.path=DIR_OR_VIDEO (a folder of frames or a video file)")
        self.path = Path(path).expanduser()

    def frames(self, count: int, image_size: int) -> Tensor:
        """(count, image_size, image_size, 3) float32 RGB in [0, 1]: the first ``count`` frames, resized."""
        return read_video(self.path, count, image_size)


def read_video(path: str | Path, frames: int, image_size: int) -> Tensor:
    """The first ``frames`` frames of a video, as (frames, image_size, image_size, 3) float32 RGB in [0, 1].

    Args:
        path: a folder of images (sorted by file name) or a video file (MP4 needs imageio's ffmpeg or pyav
            plugin; GIF works out of the box).
        frames: frames wanted T; the video must have at least T.
        image_size: side of the square frames the video is resized to [px].
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"data.path={path}: no such file or folder; give a folder of frames or a video file")
    images = _read_folder(path) if path.is_dir() else _read_file(path)
    if len(images) < frames:
        raise InputError(
            f"data.path={path}: {len(images)} frames, but the scene needs {frames}; "
            f"set scene.frames={len(images)} or give a longer video"
        )
    clip = torch.from_numpy(np.stack([_to_rgb(im, path) for im in images[:frames]]))  # (T, H, W, 3) float32
    clip = torch.nn.functional.interpolate(clip.permute(0, 3, 1, 2), size=(image_size, image_size), mode="area")
    return clip.permute(0, 2, 3, 1).contiguous()


def _read_folder(path: Path) -> list[np.ndarray]:
    import imageio.v3 as iio

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise InputError(f"data.path={path}: the folder holds no frames ({', '.join(FRAME_SUFFIXES)})")
    images = []
    for file in files:
        try:
            images.append(iio.imread(file))
        except Exception as e:
            raise InputError(f"data.path={path}: cannot read frame {file.name} ({type(e).__name__}: {e})") from e
    shapes = {im.shape[:2] for im in images}
    if len(shapes) > 1:
        raise InputError(f"data.path={path}: the frames differ in size {sorted(shapes)}; give frames of one size")
    return images


def _read_file(path: Path) -> list[np.ndarray]:
    import imageio.v3 as iio

    try:
        video = iio.imread(path, index=None)
    except Exception as e:
        hint = " (MP4 needs: pip install imageio[ffmpeg])" if path.suffix.lower() in (".mp4", ".mov", ".avi") else ""
        raise InputError(f"data.path={path}: cannot read it as a video{hint}: {type(e).__name__}") from e
    if video.ndim == 3 and video.shape[-1] not in (3, 4):  # a stack of grey frames
        return list(video)
    if video.ndim != 4:
        raise InputError(f"data.path={path}: holds a single image, not a video; give a folder of frames or a video")
    return list(video)


def _to_rgb(image: np.ndarray, path: Path) -> np.ndarray:
    """(H, W), (H, W, 3) or (H, W, 4) uint8/uint16/float image -> (H, W, 3) float32 in [0, 1]."""
    if np.issubdtype(image.dtype, np.integer):
        scaled = image.astype(np.float32) / np.iinfo(image.dtype).max
    else:
        scaled = image.astype(np.float32)
    if scaled.ndim == 2:
        scaled = np.repeat(scaled[..., None], 3, axis=-1)
    if scaled.ndim != 3 or scaled.shape[-1] not in (3, 4):
        raise InputError(f"data.path={path}: frames of shape {image.shape} are neither grey nor RGB(A)")
    return np.clip(scaled[..., :3], 0.0, 1.0)
