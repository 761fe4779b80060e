"""Metric scale for a monocular fit from one number the user knows about the video.

A fit from a single moving camera recovers depth and motion up to one unknown scale. One known length fixes it:

* ``baseline_m``: the distance the camera travelled over the clip [m] (e.g. from a phone's odometer, a tape
  measure or a car's speed x duration): the scale is ``baseline_m`` over the length of the fitted camera path,
  measured over 10 equal parts of the clip (:func:`path_length`).
* ``camera_height``: the camera's height above a flat ground visible in the lower part of the frames [m] (1.65 for
  the KITTI car): a plane is fitted, per frame, to the fitted depth of the lower third of the image by RANSAC
  (the plane with the most inliers among those facing the camera's up axis), and the scale is ``camera_height``
  over the median of the camera's distances to these planes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from runner.errors import ConfigError, InputError
from runner.geometry.cameras import unproject_cam
from tasks.depth_from_video.metrics import camera_centres

PLANE_TRIALS = 200  # RANSAC samples per frame
PLANE_POINTS = 3000  # points of the lower third drawn per frame
INLIER_FRACTION = 0.02  # inlier distance as a fraction of the median depth of those points
MIN_UPRIGHT = 0.7  # |normal . camera y| of a ground plane (the camera looks roughly level)
PATH_SEGMENTS = 10  # the path length is measured over this many equal parts of the clip


def check_metric_hints(camera_height: float | None, baseline_m: float | None) -> None:
    """ConfigError unless at most one of the two is given and it is a number > 0."""
    if camera_height is not None and baseline_m is not None:
        raise ConfigError("give data.camera_height or data.baseline_m, not both (one length fixes the scale)")
    for name, value in (("camera_height", camera_height), ("baseline_m", baseline_m)):
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"data.{name} must be a length in metres > 0, got {value!r}")


def path_length(cam_from_first: Tensor, segments: int = PATH_SEGMENTS) -> float:
    """Length of the camera path through (T, 4, 4) ``cam_t_from_cam_0`` poses [their units]: :func:`chord_length`
    of their centres."""
    return chord_length(camera_centres(cam_from_first), segments)


def chord_length(centres: Tensor, segments: int = PATH_SEGMENTS) -> float:
    """Length of a path through (T, 3) camera centres, measured along ``segments`` equal parts of the clip (chords
    between evenly spaced frames): a fit's frame-to-frame jitter of a few millimetres would otherwise add up over
    hundreds of frames to more than a slow camera travels."""
    index = torch.linspace(0, len(centres) - 1, min(segments, len(centres) - 1) + 1).round().long().unique()
    centres = centres[index.to(centres.device)]
    return float((centres[1:] - centres[:-1]).norm(dim=-1).sum())


def scale_from_baseline(cam_from_first: Tensor, baseline_m: float) -> float:
    """Metres per fit unit from the distance travelled; InputError for a camera that did not move."""
    length = path_length(cam_from_first)
    if length <= 1e-9:
        raise InputError("data.baseline_m: the fitted camera path has no length (the camera did not move)")
    return baseline_m / length


def ground_height(depth: Tensor, K: Tensor, generator: torch.Generator) -> float | None:
    """The camera's distance to the ground plane under it, from one frame's depth [depth units], or None.

    Args:
        depth: (H, W) depth of one frame.
        K: (3, 3) its intrinsics [px].
        generator: draws the points and the RANSAC samples.
    """
    H, W = depth.shape
    rows = torch.arange(2 * H // 3, H, device=depth.device)
    v, u = torch.meshgrid(rows.to(depth.dtype), torch.arange(W, device=depth.device, dtype=depth.dtype), indexing="ij")
    pix = torch.stack([u, v], -1).reshape(-1, 2)
    points = unproject_cam(pix[None], depth[rows].reshape(1, -1), K[None])[0]  # (N, 3) camera frame, y down
    pick = torch.randint(len(points), (PLANE_POINTS,), generator=generator, device="cpu").to(points.device)
    points = points[pick]
    tolerance = INLIER_FRACTION * float(points[:, 2].median())
    triples = torch.randint(len(points), (PLANE_TRIALS, 3), generator=generator, device="cpu").to(points.device)
    a, b, c = points[triples].unbind(1)  # (S, 3) each
    normal = torch.nn.functional.normalize(torch.linalg.cross(b - a, c - a), dim=-1)  # (S, 3)
    offset = (normal * a).sum(-1)  # (S,) plane: normal . p = offset
    upright = normal[:, 1].abs() > MIN_UPRIGHT
    inliers = ((points @ normal.T - offset).abs() < tolerance).sum(0) * upright  # (S,)
    best = int(inliers.argmax())
    if not upright[best] or inliers[best] < 0.2 * PLANE_POINTS:
        return None
    chosen = (points @ normal[best] - offset[best]).abs() < tolerance
    q = points[chosen]  # least-squares refit on the inliers: the smallest singular vector of the centred points
    centre = q.mean(0)
    n = torch.linalg.svd(q - centre, full_matrices=False).Vh[-1]
    return float((n * centre).sum().abs())


def scale_from_camera_height(depth: Tensor, K: Tensor, camera_height: float, seed: int = 0) -> float:
    """Metres per fit unit from the camera's height above the ground, over (T, H, W) depth with (3, 3) K.

    Raises:
        InputError: no frame shows a ground plane in its lower third.
    """
    generator = torch.Generator().manual_seed(seed)
    heights = [h for h in (ground_height(d, K, generator) for d in depth) if h is not None and h > 0]
    if not heights:
        raise InputError(
            "data.camera_height: no frame shows a flat ground in its lower third; give data.baseline_m instead"
        )
    return camera_height / float(torch.tensor(heights).median())
