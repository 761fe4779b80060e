"""Video sequences for depth_from_video: the embedded synthetic streets and the user's own videos.

Every source yields :class:`Sequence` records (frames, intrinsics, and where known ground-truth depth
and poses) split into ``train`` and ``test``. Sources, chosen with ``data=<name>``:

========================  ===============================================================================
``StreetVideos``          embedded default: procedural streets ray cast analytically (exact depth, poses)
``FramesVideo``           a folder of frames or a video file, plus an intrinsics YAML/JSON
``SevenScenes``           the 7-Scenes layout (``frame-XXXXXX.color.jpg/.depth.png/.pose.txt``)
``KittiRaw``              the KITTI raw layout with split files (as written by ``dwx data export``)
========================  ===============================================================================

Frames are (T, 3, H, W) float in [0, 1], resized to the configured image size with the intrinsics
rescaled to match (pixel centres preserved, see :meth:`PinholeCamera.resized`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

from runner.cache import GenerationProgress, cached
from runner.errors import ConfigError, InputError
from runner.geometry.cameras import PinholeCamera
from runner.geometry.transforms import invert_rigid
from runner.render.raycast import RaycastRenderer
from runner.task import check_data_source
from runner.validation import image_size_value
from tasks.depth_from_video.metric_scale import check_metric_hints

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif")
STREETS_VERSION = 2  # bump when the street generator changes, so cached data is rebuilt


@dataclass(frozen=True)
class Sequence:
    """One video.

    Attributes:
        name: identifier (used in exported file names).
        frames: (T, 3, H, W) float32 RGB in [0, 1].
        K: (3, 3) intrinsics in pixels for (H, W).
        depth: (T, H, W) ground-truth depth [m], 0 where invalid; or None.
        cam_from_world: (T, 4, 4) ground-truth poses (OpenCV camera); or None.
    """

    name: str
    frames: Tensor
    K: Tensor
    depth: Tensor | None = None
    cam_from_world: Tensor | None = None

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.frames.shape[-2:])

    def __len__(self) -> int:
        return self.frames.shape[0]

    def to(self, device: torch.device) -> Sequence:
        """The same sequence with every tensor on ``device``."""

        def move(x: Tensor | None) -> Tensor | None:
            return None if x is None else x.to(device)

        return Sequence(
            self.name, self.frames.to(device), self.K.to(device), move(self.depth), move(self.cam_from_world)
        )


@dataclass(frozen=True)
class Splits:
    train: list[Sequence]
    test: list[Sequence]


# ============================================================================ resizing
def resize_frames(frames: Tensor, image_size: tuple[int, int]) -> Tensor:
    """(T, 3, h, w) -> (T, 3, H, W), pixel centres where :func:`rescale_K` puts them.

    Shrinking by whole factors averages blocks (area); by other factors, or enlarging, it samples
    bilinearly, antialiased when shrinking. Area averaging by a fractional factor would average bins of
    unequal width, whose centres sit up to a quarter of a source pixel off (96 -> 64 rows: +-0.25 px on a
    ramp; antialiased bilinear: under 0.06 px at 96 -> 64 or 80).
    """
    (h, w), (H, W) = frames.shape[-2:], tuple(image_size)
    if (h, w) == (H, W):
        return frames
    if h % H == 0 and w % W == 0:
        return F.interpolate(frames, size=(H, W), mode="area")
    out = F.interpolate(frames, size=(H, W), mode="bilinear", align_corners=False, antialias=h >= H and w >= W)
    return out.clamp(0, 1)


SIZE_MULTIPLE = 32  # the width a height alone gives is a multiple of this (the learned networks' stride)


def frame_size(image_size: int | tuple[int, int], stored: tuple[int, int]) -> tuple[int, int]:
    """The (H, W) frames stored at ``stored`` (h, w) are resized to.

    Args:
        image_size: (H, W), or one number H: the width then keeps the frames' aspect ratio, rounded to a
            multiple of :data:`SIZE_MULTIPLE` (640x480 at H = 96 -> 96x128; 1242x375 -> 96x320).
        stored: (h, w) of the frames as stored.
    """
    if isinstance(image_size, int):
        h, w = stored
        width = max(SIZE_MULTIPLE, math.floor(image_size * w / h / SIZE_MULTIPLE + 0.5) * SIZE_MULTIPLE)
        return image_size, width
    return tuple(image_size)


def check_image_size(image_size: object) -> int | tuple[int, int]:
    """``data.image_size`` as a height or an (H, W) pair of positive integers, or a one-line error."""
    size = image_size_value(image_size)
    if size is None:
        raise ConfigError(
            f"data.image_size must be a height H or [H, W] in pixels (positive integers), got {image_size}"
        )
    return size


def resize_depth(depth: Tensor, image_size: tuple[int, int]) -> Tensor:
    """(T, h, w) depth -> (T, H, W) by nearest sampling (never averages across depth edges or holes)."""
    if tuple(depth.shape[-2:]) == tuple(image_size):
        return depth
    return F.interpolate(depth[:, None], size=image_size, mode="nearest")[:, 0]


def rescale_K(K: Tensor, from_size: tuple[int, int], to_size: tuple[int, int]) -> Tensor:
    """(3, 3) intrinsics for an image of ``from_size`` (H, W) -> for ``to_size``."""
    cam = PinholeCamera(K[None], torch.eye(4, dtype=K.dtype)[None], tuple(from_size))
    return cam.resized(tuple(to_size)).K[0]


class VideoSource:
    """A data source of depth_from_video: :meth:`load` gives the train / test splits; :meth:`export` writes them
    in open formats (what ``dwx data export`` runs, for any source that has it).

    Attributes:
        camera_height, baseline_m: one length the user knows [m] (the camera's height above the ground, or the
            distance it travelled over the clip), from which ``mode=fit`` puts its depth in metres
            (:mod:`~tasks.depth_from_video.metric_scale`); None = unknown.
    """

    camera_height: float | None = None
    baseline_m: float | None = None

    def set_metric_hints(self, camera_height: float | None, baseline_m: float | None) -> None:
        """Keep the length the user knows (at most one, > 0; see the attributes)."""
        check_metric_hints(camera_height, baseline_m)
        self.camera_height, self.baseline_m = camera_height, baseline_m

    def load(self) -> Splits:
        raise NotImplementedError

    def export(self, out_dir: str | Path) -> str:
        """Write the splits into ``out_dir`` (see :func:`export_splits`); returns a one-line summary."""
        splits = self.load()
        export_splits(splits, out_dir)
        n = sum(len(s) for s in splits.train + splits.test)
        return (
            f"wrote {len(splits.train)} training and {len(splits.test)} test sequences ({n} frames) to {out_dir} "
            f"(and the KITTI raw layout to {Path(out_dir) / 'kitti'})"
        )


def check_video_source(data: object) -> None:
    """Refuse another task's data source (``data=mesh``) in one line; both modes read a :class:`VideoSource`."""
    check_data_source(data, (VideoSource,), "depth_from_video", "a video: data=streets|frames|seven_scenes|kitti")


# ============================================================================ embedded data
class StreetVideos(VideoSource):
    """Procedural street videos, ray cast analytically (``runner.render.raycast``): exact depth and poses.

    A camera drives forward through a street of textured buildings, cars, poles and spheres, with a
    smooth seeded wobble in heading and pitch. Train and test sequences come from disjoint scene and
    path seeds. Intrinsics follow monodepth2's normalised KITTI values (fx = 0.58 W, fy = 1.92 H).
    Generated once per configuration and cached (``runner.cache``).

    Args:
        train_sequences, test_sequences: numbers of videos.
        frames_per_sequence: T.
        image_size: (H, W).
        speed: distance per frame [m].
        yaw_rate: peak heading change per frame [rad].
        renderer: the ray caster that draws the videos (``renderer=raycast``: its background, lighting, shadows
            and supersampling; the task config gives it the street's sky); None = ``RaycastRenderer()``.
        depth_noise: multiplicative Gaussian noise on the ground-truth depth (sensor-like); 0 = exact.
        seed: data seed.
        camera_height, baseline_m: see :class:`VideoSource` (mode=fit: depth in metres; the streets' camera
            rides 1.5 m above the road).
    """

    def __init__(
        self,
        train_sequences: int = 24,
        test_sequences: int = 2,
        frames_per_sequence: int = 60,
        image_size: tuple[int, int] = (64, 192),
        speed: float = 0.5,
        yaw_rate: float = 0.01,
        renderer: RaycastRenderer | None = None,
        depth_noise: float = 0.0,
        seed: int = 0,
        camera_height: float | None = None,
        baseline_m: float | None = None,
    ):
        self.set_metric_hints(camera_height, baseline_m)
        if train_sequences < 1 or test_sequences < 1:
            raise ConfigError("data.train_sequences and data.test_sequences must be >= 1")
        if frames_per_sequence < 3:
            raise ConfigError(f"data.frames_per_sequence must be >= 3, got {frames_per_sequence}")
        self.train_sequences, self.test_sequences = int(train_sequences), int(test_sequences)
        self.frames_per_sequence = int(frames_per_sequence)
        self.image_size = check_image_size(image_size)
        if isinstance(self.image_size, int):
            raise ConfigError(
                f"data=streets draws its frames at data.image_size=[H, W]: a height alone ({image_size}) has no "
                "frames to take the width's aspect ratio from"
            )
        self.speed, self.yaw_rate = float(speed), float(yaw_rate)
        self.renderer = renderer if renderer is not None else RaycastRenderer()
        self.depth_noise, self.seed = float(depth_noise), int(seed)

    def key(self) -> dict:
        """What the videos depend on: the generator's version, the data settings and the renderer's."""
        r = self.renderer
        drawn_by = {
            "background": r.background,
            "ambient": r.ambient,
            "light_dir": r.light_dir,
            "shadows": r.shadows,
            "supersample": r.supersample,
        }
        return {"version": STREETS_VERSION, **{k: v for k, v in vars(self).items() if k != "renderer"}, **drawn_by}

    def load(self) -> Splits:
        data = cached("depth_from_video_streets", self.key(), self._generate)
        sequences = [
            Sequence(name, frames.permute(0, 3, 1, 2).float() / 255, K, depth, poses)
            for name, frames, K, depth, poses in zip(
                data["names"], data["frames"], data["K"], data["depth"], data["poses"]
            )
        ]
        return Splits(sequences[: self.train_sequences], sequences[self.train_sequences :])

    def _generate(self) -> dict:
        from tasks.depth_from_video.streets import forward_camera_path, make_street_scene

        H, W = self.image_size
        renderer = self.renderer
        K = PinholeCamera.intrinsics(0.58 * W, 1.92 * H, (W - 1) / 2, (H - 1) / 2)[0]
        out = {"names": [], "frames": [], "K": [], "depth": [], "poses": []}
        splits = [("train", i, 1000 * self.seed + i) for i in range(self.train_sequences)]
        splits += [("test", i, 1000 * self.seed + 500 + i) for i in range(self.test_sequences)]
        progress = GenerationProgress(len(splits), f"street videos ({self.frames_per_sequence} frames at {H}x{W})")
        for split, i, seed in splits:
            scene = make_street_scene(seed, length=max(60.0, self.speed * self.frames_per_sequence + 30.0))
            poses = forward_camera_path(seed, self.frames_per_sequence, speed=self.speed, yaw_rate=self.yaw_rate)
            frames, depth = [], []
            for chunk in torch.split(poses, 8):
                cams = PinholeCamera(K.expand(len(chunk), 3, 3), chunk, (H, W))
                with torch.no_grad():
                    r = renderer(scene, cams)
                frames.append((r.rgb.clamp(0, 1) * 255).round().to(torch.uint8))
                depth.append(r.depth)
            depth = torch.cat(depth)
            if self.depth_noise > 0:
                g = torch.Generator().manual_seed(seed)
                depth = depth * (1 + self.depth_noise * torch.randn(depth.shape, generator=g))
            out["names"].append(f"street_{split}_{i:02d}")
            out["frames"].append(torch.cat(frames))
            out["K"].append(K.clone())
            out["depth"].append(depth)
            out["poses"].append(poses)
            progress.done_one()
        return out


# ============================================================================ user data
def write_intrinsics(path: Path, K: Tensor, image_size: tuple[int, int], **extra) -> None:
    """(3, 3) ``K`` [px] of an (H, W) image as the JSON :func:`read_intrinsics` reads (fx, fy, cx, cy, width, height),
    plus any ``extra`` keys."""
    k = K.tolist()
    H, W = image_size
    record = {"fx": k[0][0], "fy": k[1][1], "cx": k[0][2], "cy": k[1][2], "width": W, "height": H, **extra}
    path.write_text(json.dumps(record, indent=2) + "\n")


def read_intrinsics(path: str | Path) -> tuple[Tensor, tuple[int, int]]:
    """Intrinsics from YAML or JSON with ``fx, fy, cx, cy`` [px] and ``width, height`` they refer to.

    Returns:
        K (3, 3) float32 and the (H, W) it refers to.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"data.intrinsics: file not found: {path}")
    try:
        d = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
    except yaml.YAMLError as e:
        raise InputError(f"data.intrinsics: cannot parse {path}: {e}") from e
    need = ("fx", "fy", "cx", "cy", "width", "height")
    missing = [k for k in need if not isinstance(d, dict) or k not in d]
    if missing:
        raise InputError(
            f"data.intrinsics: {path} lacks {', '.join(missing)} (needs fx, fy, cx, cy in pixels and "
            "the width, height of the image they refer to)"
        )
    whole = (lambda x: 0 < x < math.inf and x.is_integer(), "a positive integer [px]")
    positive = (lambda x: 0 < x < math.inf, "a positive finite number [px]")
    width, height = (_intrinsic(d, k, path, *whole) for k in ("width", "height"))
    fx, fy = (_intrinsic(d, k, path, *positive) for k in ("fx", "fy"))
    inside = "a number in [0, {}] (the principal point lies in the image) [px]"
    cx = _intrinsic(d, "cx", path, lambda x: 0 <= x <= width, inside.format(int(width)))
    cy = _intrinsic(d, "cy", path, lambda x: 0 <= x <= height, inside.format(int(height)))
    K = PinholeCamera.intrinsics(fx, fy, cx, cy)[0]
    return K, (int(height), int(width))


def _intrinsic(d: dict, key: str, path: Path, ok, need: str) -> float:
    """``d[key]`` as a float for which ``ok`` holds, else an InputError naming the key, the file and the fix."""
    value = d[key]
    try:
        number = math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not ok(number):
        raise InputError(f"data.intrinsics: {key} must be {need}, got {value!r} (file {path}): fix the file")
    return number


def read_image(path: Path) -> Tensor:
    """(3, H, W) float RGB in [0, 1] from an 8- or 16-bit image file."""
    return _to_chw(_decode(path), path)


def _decode(path: Path) -> np.ndarray:
    """The (h, w[, c]) pixels of an image file as stored (uint8 or uint16)."""
    try:
        return iio.imread(path)
    except Exception as e:
        raise InputError(f"cannot read frame {path}: {e}") from e


def _to_chw(img: np.ndarray, where, image_size: tuple[int, int] | None = None) -> Tensor:
    """(h, w[, c]) decoded pixels -> (3, H, W) float RGB in [0, 1], resized to ``image_size`` when given."""
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] not in (3, 4):
        raise InputError(f"{where}: expected an RGB image, got an array of shape {img.shape}")
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    frame = torch.from_numpy(np.ascontiguousarray(img[..., :3])).permute(2, 0, 1).float().div_(scale)
    return frame if image_size is None else resize_frames(frame[None], image_size)[0]


def read_frames_at(
    path: str | Path, image_size: int | tuple[int, int] | None = None, stride: int = 1
) -> tuple[Tensor, tuple[int, int]]:
    """Every ``stride``-th frame of a folder of images (sorted by name) or a video file (imageio).

    Each frame is resized to ``image_size`` (H, W, or a height H: :func:`frame_size`) by :func:`resize_frames`
    right after it is decoded, so memory holds one frame at its stored size plus T frames at that size (None
    keeps the stored size).

    Returns:
        frames (T, 3, H, W) float RGB in [0, 1] and the (h, w) they were stored at (to rescale intrinsics).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"data.path: not found: {path} (give a folder of frames or a video file)")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"data.path: no frames ({', '.join(IMAGE_SUFFIXES)}) in {path}")
        decoded = ((f, _decode(f)) for f in files[::stride])
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        decoded = ((path, img) for img in _video_frames(path, stride))
    else:
        raise InputError(f"data.path: {path} is neither a folder of frames nor a video ({', '.join(VIDEO_SUFFIXES)})")
    frames, size, first = [], None, None
    for where, img in decoded:
        if size is None:
            size, first = tuple(img.shape[:2]), where
            image_size = None if image_size is None else frame_size(image_size, size)
        elif tuple(img.shape[:2]) != size:
            raise InputError(
                f"data.path: frames differ in size ({sorted({size, tuple(img.shape[:2])})}), e.g. {first.name} and "
                f"{where.name}; resize them to one size first"
            )
        frames.append(_to_chw(img, where, image_size))
    if not frames:
        raise InputError(f"data.path: no frames in {path}")
    return torch.stack(frames), size


def _video_frames(path: Path, stride: int):
    """Every ``stride``-th frame of a video file as (h, w, c) pixels, decoded one at a time."""
    try:
        for i, img in enumerate(iio.imiter(path)):
            if i % stride == 0:
                yield img
    except Exception as e:
        raise InputError(
            f"data.path: cannot read video {path}: {e} (MP4 needs the video extra: pip install -e '.[video]')"
        ) from e


class FramesVideo(VideoSource):
    """The user's own video: a folder of frames or a video file, with intrinsics when they are known.

    Args:
        path: folder of frames (sorted by name) or a video file.
        intrinsics: YAML/JSON file with fx, fy, cx, cy [px], width, height; None: unknown, guessed from ``fov``
            (``mode=fit`` estimates them; ``mode=learn`` needs them).
        fov: the horizontal field of view of the guess without ``intrinsics`` [deg], in (0, 180).
        image_size: (H, W) the frames are resized to, each as it is decoded (intrinsics rescaled to match), or
            a height H: the width then keeps the frames' aspect ratio (:func:`frame_size`).
        test_fraction: the last fraction of the frames is held out for evaluation and prediction.
        depth_path: optional folder of ground-truth depth maps (16-bit PNG in mm or .npy in m, sorted by
            name, one per frame, 0 = invalid) for evaluation. Without it (a video without depth) the run
            trains, predicts and saves as with it, and is scored by ``val_photometric``, the photometric
            reprojection error on the held-out frames, instead of ``abs_rel``.
        frame_stride: use every k-th frame (more parallax for slow cameras).
        camera_height, baseline_m: see :class:`VideoSource` (mode=fit: depth in metres).

    The sequences carry no ground-truth poses (no ATE).

    Attributes:
        intrinsics_known: ``intrinsics`` was given.
    """

    def __init__(
        self,
        path: str,
        intrinsics: str | None = None,
        image_size: int | tuple[int, int] = 96,
        test_fraction: float = 0.2,
        depth_path: str | None = None,
        frame_stride: int = 1,
        fov: float = 60.0,
        camera_height: float | None = None,
        baseline_m: float | None = None,
    ):
        self.set_metric_hints(camera_height, baseline_m)
        if path is None:
            raise ConfigError("data=frames needs data.path=<folder or video>")
        if not 0 <= test_fraction < 1:
            raise ConfigError(f"data.test_fraction must be in [0, 1), got {test_fraction}")
        if not 0 < fov < 180:
            raise ConfigError(f"data.fov must be in (0, 180) degrees, got {fov}")
        self.path, self.intrinsics, self.depth_path = path, intrinsics, depth_path
        self.image_size = check_image_size(image_size)
        self.test_fraction, self.frame_stride, self.fov = float(test_fraction), int(frame_stride), float(fov)
        self.intrinsics_known = intrinsics is not None
        if self.intrinsics_known:
            self.K, self.k_size = read_intrinsics(intrinsics)  # checked here, before any frame is decoded

    def load(self) -> Splits:
        frames, (h, w) = read_frames_at(self.path, self.image_size, self.frame_stride)
        size = tuple(frames.shape[-2:])
        if not self.intrinsics_known:
            f = 0.5 * w / math.tan(math.radians(self.fov) / 2)
            self.K, self.k_size = PinholeCamera.intrinsics(f, f, (w - 1) / 2, (h - 1) / 2)[0], (h, w)
        K, k_size = self.K, self.k_size
        if (h, w) != k_size:
            if abs(h / w - k_size[0] / k_size[1]) > 0.01:
                raise InputError(
                    f"data.intrinsics refer to {k_size[1]}x{k_size[0]} images but the frames are {w}x{h} "
                    "with another aspect ratio; give intrinsics for the frames' size"
                )
            K = rescale_K(K, k_size, (h, w))
        depth = read_depth_folder(self.depth_path)[:: self.frame_stride] if self.depth_path else None
        if depth is not None and len(depth) != len(frames):
            raise InputError(f"data.depth_path has {len(depth)} depth maps for {len(frames)} frames")
        depth = None if depth is None else resize_depth(depth, size)
        seq = Sequence(Path(self.path).stem, frames, rescale_K(K, (h, w), size), depth)
        return split_sequence(seq, self.test_fraction)


def read_depth_folder(path: str | Path) -> Tensor:
    """(T, H, W) depth [m] from 16-bit PNGs in mm or .npy files in m, sorted by name; 0 = invalid."""
    path = Path(path)
    files = []
    if path.is_dir():  # .npy (metres, exact) when both kinds are there
        files = sorted(path.glob("*.npy")) or sorted(p for p in path.iterdir() if p.suffix.lower() == ".png")
    if not files:
        raise InputError(f"data.depth_path: no depth maps (.png in mm or .npy in m) in {path}")
    return torch.stack([read_depth(f) for f in files])


def read_depth(path: Path, png_scale: float = 1000.0) -> Tensor:
    """(H, W) depth [m] from a 16-bit PNG (value / ``png_scale``) or a .npy in metres."""
    try:
        d = np.load(path) if path.suffix == ".npy" else iio.imread(path).astype(np.float32) / png_scale
    except Exception as e:
        raise InputError(f"cannot read depth map {path}: {e}") from e
    return torch.from_numpy(np.asarray(d, dtype=np.float32))


def split_sequence(seq: Sequence, test_fraction: float) -> Splits:
    """Hold out the last ``test_fraction`` of one video (at least 3 frames each side)."""
    T = len(seq)
    n_test = int(round(T * test_fraction))
    if test_fraction > 0 and (n_test < 3 or T - n_test < 3):
        raise InputError(
            f"{T} frames are too few to hold out {test_fraction:.0%} for testing with 3 frames on each "
            "side; give more frames or data.test_fraction=0"
        )
    if n_test == 0:
        return Splits([seq], [seq])

    def part(sl: slice, suffix: str) -> Sequence:
        return Sequence(
            f"{seq.name}_{suffix}",
            seq.frames[sl],
            seq.K,
            None if seq.depth is None else seq.depth[sl],
            None if seq.cam_from_world is None else seq.cam_from_world[sl],
        )

    return Splits([part(slice(0, T - n_test), "train")], [part(slice(T - n_test, T), "test")])


def _finish(seq: Sequence, image_size: int | tuple[int, int]) -> Sequence:
    """Resize frames and depth to ``image_size`` ((H, W) or a height: :func:`frame_size`) and rescale K."""
    size = seq.image_size
    image_size = frame_size(image_size, size)
    return Sequence(
        seq.name,
        resize_frames(seq.frames, image_size),
        rescale_K(seq.K, size, image_size),
        None if seq.depth is None else resize_depth(seq.depth, image_size),
        seq.cam_from_world,
    )


class SevenScenes(VideoSource):
    """The 7-Scenes layout (``frame-XXXXXX.color.jpg``, ``.depth.png`` in mm with 0 = invalid,
    ``.pose.txt`` camera-to-world) with ``camera-intrinsics.txt`` (a 3x3 matrix) beside ``frames/``.

    Colour and depth cameras of 7-Scenes are not registered: evaluate with median scaling at a coarse
    resolution (see ../shared/data/7scenes_redkitchen/SOURCES.md).

    Args:
        root: the folder holding ``camera-intrinsics.txt`` and ``frames/`` (or the frames themselves).
        image_size: (H, W), or a height H (the width keeps the frames' aspect ratio: :func:`frame_size`).
        frame_stride: use every k-th frame (the Kinect moves ~0.5 cm per frame).
        test_fraction: the last fraction of the (strided) frames is held out for evaluation.
        camera_height, baseline_m: see :class:`VideoSource` (mode=fit: depth in metres).
    """

    def __init__(
        self,
        root: str,
        image_size: tuple[int, int] = (96, 128),
        frame_stride: int = 2,
        test_fraction: float = 0.0,
        camera_height: float | None = None,
        baseline_m: float | None = None,
    ):
        self.set_metric_hints(camera_height, baseline_m)
        if root is None:
            raise ConfigError("data=seven_scenes needs data.root=<folder with frames/ and camera-intrinsics.txt>")
        self.root, self.image_size = Path(root), check_image_size(image_size)
        self.frame_stride, self.test_fraction = int(frame_stride), float(test_fraction)

    def load(self) -> Splits:
        frames_dir = self.root / "frames" if (self.root / "frames").is_dir() else self.root
        colour = sorted(frames_dir.glob("frame-*.color.*"))
        if not colour:
            raise InputError(f"data.root: no frame-XXXXXX.color.jpg files in {frames_dir}")
        colour = colour[:: self.frame_stride]
        intr = self.root / "camera-intrinsics.txt"
        if not intr.is_file():
            raise InputError(f"data.root: {intr} not found (a 3x3 intrinsics matrix in pixels)")
        K = torch.from_numpy(np.loadtxt(intr, dtype=np.float32).reshape(3, 3))
        frames = torch.stack([read_image(p) for p in colour])
        stems = [p.name.split(".")[0] for p in colour]
        depth = torch.stack([read_depth(frames_dir / f"{s}.depth.png") for s in stems])
        depth[depth >= 65.535] = 0.0  # 7-Scenes marks invalid depth with 65535 as well as 0
        world_from_cam = torch.stack(
            [torch.from_numpy(np.loadtxt(frames_dir / f"{s}.pose.txt", dtype=np.float32)) for s in stems]
        )
        seq = Sequence(self.root.name, frames, K, depth, invert_rigid(world_from_cam))
        return split_sequence(_finish(seq, self.image_size), self.test_fraction)


class KittiRaw(VideoSource):
    """The KITTI raw layout with split files, as ``dwx data export`` writes it.

    ``<root>/<date>/<drive>/image_02/data/<index:010d>.png``, intrinsics from ``<root>/<date>/
    calib_cam_to_cam.txt`` (``P_rect_02``), optional ground truth in KITTI's depth format
    (``<drive>/proj_depth/groundtruth/image_02/<index:010d>.png``: uint16, depth x 256, 0 = invalid)
    and poses (``<drive>/poses.txt``: one row-major 3x4 camera-to-world per frame, KITTI odometry style).
    Split files list ``<date>/<drive> <frame index> l`` per line (monodepth2's format).

    Args:
        root: the dataset root.
        train_split, test_split: split files (relative to ``root`` or absolute).
        image_size: (H, W), or a height H (the width keeps the frames' aspect ratio: :func:`frame_size`).
    """

    def __init__(
        self,
        root: str,
        train_split: str = "splits/train_files.txt",
        test_split: str = "splits/test_files.txt",
        image_size: tuple[int, int] = (96, 320),
    ):
        if root is None:
            raise ConfigError("data=kitti needs data.root=<KITTI raw folder>")
        self.root, self.image_size = Path(root), check_image_size(image_size)
        self.train_split, self.test_split = train_split, test_split

    def load(self) -> Splits:
        return Splits(self._read_split(self.train_split), self._read_split(self.test_split))

    def _read_split(self, split: str) -> list[Sequence]:
        path = Path(split) if Path(split).is_absolute() else self.root / split
        if not path.is_file():
            raise InputError(f"data: split file not found: {path}")
        drives: dict[str, list[int]] = {}
        for n, line in enumerate(path.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3 or not parts[1].isdigit() or parts[2] not in ("l", "r"):
                raise InputError(f"{path}:{n}: expected '<date>/<drive> <frame index> l', got {line!r}")
            drives.setdefault(parts[0], []).append(int(parts[1]))
        return [self._read_drive(drive, sorted(set(idx))) for drive, idx in drives.items()]

    def _read_drive(self, drive: str, indices: list[int]) -> Sequence:
        folder = self.root / drive
        images = [folder / "image_02" / "data" / f"{i:010d}.png" for i in indices]
        frames = torch.stack([read_image(p) for p in images])
        K = _read_kitti_K(self.root / drive.split("/")[0] / "calib_cam_to_cam.txt")
        gt_dir = folder / "proj_depth" / "groundtruth" / "image_02"
        depth = None
        if gt_dir.is_dir():
            depth = torch.stack([read_depth(gt_dir / f"{i:010d}.png", png_scale=256.0) for i in indices])
        poses = None
        if (folder / "poses.txt").is_file():
            rows = np.loadtxt(folder / "poses.txt", dtype=np.float32).reshape(-1, 3, 4)[indices]
            world_from_cam = torch.cat(
                [torch.from_numpy(rows), torch.tensor([[[0, 0, 0, 1.0]]]).expand(len(rows), 1, 4)], 1
            )
            poses = invert_rigid(world_from_cam)
        return _finish(Sequence(drive.replace("/", "_"), frames, K, depth, poses), self.image_size)


def _read_kitti_K(calib: Path) -> Tensor:
    if not calib.is_file():
        raise InputError(f"data: KITTI calibration not found: {calib}")
    for line in calib.read_text().splitlines():
        if line.startswith("P_rect_02:"):
            P = np.array(line.split(":")[1].split(), dtype=np.float32).reshape(3, 4)
            return torch.from_numpy(P[:, :3].copy())
    raise InputError(f"{calib}: no P_rect_02 line")


# ============================================================================ export
def export_splits(splits: Splits, out_dir: str | Path) -> Path:
    """Write sequences as PNG frames, depth (16-bit PNG in mm and .npy in m), intrinsics and poses,
    and again in the KITTI raw layout with monodepth2-style split files.

    Layout::

        <out>/<split>/<sequence>/frames/000000.png, depth/000000.png (mm), depth/000000.npy (m),
                                 intrinsics.json, poses.txt (camera-to-world, row-major 3x4 per line)
        <out>/kitti/2011_01_01/calib_cam_to_cam.txt, 2011_01_01/<drive>/image_02/data/0000000000.png,
              <drive>/proj_depth/groundtruth/image_02/0000000000.png (depth x 256), <drive>/poses.txt,
              splits/train_files.txt, splits/test_files.txt
    """
    out = Path(out_dir)
    date = "2011_01_01"
    kitti = out / "kitti"
    split_lines: dict[str, list[str]] = {"train": [], "test": []}
    calib_K = None
    for split, sequences in (("train", splits.train), ("test", splits.test)):
        for n, seq in enumerate(sequences):
            plain = out / split / seq.name
            drive = f"{date}_drive_{(0 if split == 'train' else 500) + n:04d}_sync"
            kdir = kitti / date / drive
            (plain / "frames").mkdir(parents=True, exist_ok=True)
            (kdir / "image_02" / "data").mkdir(parents=True, exist_ok=True)
            write_intrinsics(plain / "intrinsics.json", seq.K, seq.image_size)
            if calib_K is None:
                calib_K = seq.K
            elif not torch.allclose(calib_K, seq.K):
                raise InputError("KITTI layout needs one set of intrinsics per date; sequences differ")
            for t in range(len(seq)):
                img = (seq.frames[t].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                iio.imwrite(plain / "frames" / f"{t:06d}.png", img)
                iio.imwrite(kdir / "image_02" / "data" / f"{t:010d}.png", img)
                split_lines[split].append(f"{date}/{drive} {t} l")
            if seq.depth is not None:
                (plain / "depth").mkdir(exist_ok=True)
                gt = kdir / "proj_depth" / "groundtruth" / "image_02"
                gt.mkdir(parents=True, exist_ok=True)
                for t in range(len(seq)):
                    d = seq.depth[t].numpy()
                    np.save(plain / "depth" / f"{t:06d}.npy", d)
                    iio.imwrite(plain / "depth" / f"{t:06d}.png", np.clip(d * 1000, 0, 65535).round().astype(np.uint16))
                    iio.imwrite(gt / f"{t:010d}.png", np.clip(d * 256, 0, 65535).round().astype(np.uint16))
            if seq.cam_from_world is not None:
                rows = invert_rigid(seq.cam_from_world)[:, :3, :].reshape(len(seq), 12).numpy()
                np.savetxt(plain / "poses.txt", rows, fmt="%.9f")
                np.savetxt(kdir / "poses.txt", rows, fmt="%.9f")
    (kitti / "splits").mkdir(parents=True, exist_ok=True)
    for split, lines in split_lines.items():
        (kitti / "splits" / f"{split}_files.txt").write_text("\n".join(lines) + "\n")
    P = torch.cat([calib_K, torch.zeros(3, 1)], 1).flatten().tolist()
    (kitti / date / "calib_cam_to_cam.txt").write_text("P_rect_02: " + " ".join(f"{v:.9e}" for v in P) + "\n")
    return out
