"""Source frames chosen by parallax: for each target frame, the frames on either side whose camera has moved far
enough, relative to the scene's depth, that a point's image moves by a given number of pixels.

A fixed frame window serves one speed of camera: a slow handheld camera needs far sources for any parallax, while
the far sources of a fast one no longer overlap its view. Measured on the fitted camera path and depth, the same
parallax goals pick near frames where the camera moves fast and far ones where it creeps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tasks.depth_from_video.metrics import camera_centres


def baseline_parallax(cam_from_first: Tensor, focal: float, mean_depth: Tensor) -> Tensor:
    """The image motion a camera translation causes at a target's mean depth, ``f * |c_s - c_t| / d_t``.

    Args:
        cam_from_first: (T, 4, 4) each frame's camera from frame 0's.
        focal: the focal length [px].
        mean_depth: (T,) each frame's mean depth, in the path's units.
    Returns:
        (T, T) parallax [px] of source s (column) seen from target t (row).
    """
    centres = camera_centres(cam_from_first)  # (T, 3) in frame 0's camera
    return focal * torch.cdist(centres, centres) / mean_depth[:, None]


def parallax_sources(parallax: Tensor, goals: list[float]) -> Tensor:
    """Per target and goal, the nearest frame before it and the nearest after it whose parallax reaches the goal.

    A side with no frame reaching the goal gives its farthest frame; a target at either end of the video takes the
    other side's frame in place of the missing side's (as the fixed window mirrors its offsets).

    Args:
        parallax: (T, T) from :func:`baseline_parallax`, T >= 2.
        goals: G parallax goals [px], each > 0.
    Returns:
        (T, 2G) long: source frame indices of each target, the frame before and the frame after for each goal in turn.
    """
    T = parallax.shape[0]
    index = torch.arange(T, device=parallax.device)
    after = index[None, :] > index[:, None]  # (T, T): column s lies after row t
    columns = []
    for goal in goals:
        reached = parallax >= goal
        ahead = torch.where(after & reached, index[None, :], T).min(1).values  # nearest reaching frame after t
        ahead = torch.where(ahead == T, T - 1, ahead)  # none: the last frame
        behind = torch.where(~after & reached & (index[None, :] != index[:, None]), index[None, :], -1).max(1).values
        behind = torch.where(behind < 0, 0, behind)  # none: the first frame
        behind = torch.where(index == 0, ahead, behind)  # frame 0 has nothing before it
        ahead = torch.where(index == T - 1, behind, ahead)  # the last frame has nothing after it
        columns += [behind, ahead]
    return torch.stack(columns, 1)
