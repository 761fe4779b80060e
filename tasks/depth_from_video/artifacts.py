"""What depth_from_video leaves for people to look at and for other tools to read: the TensorBoard image rows,
per-frame depth maps (``.npy`` data, 16-bit PNG, a colour-mapped preview), the video of frames beside their
predicted depth, and the weights. Used by the task's ``visuals`` and ``save`` and by ``dwx predict``."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor

from runner.logging import Logger, readable_size
from runner.visuals import Panel, grey, mapped, panel_row, to_uint8, write_video
from tasks.depth_from_video.data import Sequence, write_intrinsics

if TYPE_CHECKING:  # dwx predict imports this module: it needs neither the loss nor the evaluation
    from runner.geometry.cameras import PinholeCamera
    from tasks.depth_from_video.evaluation import EvalProtocol
    from tasks.depth_from_video.objective import TrainingViews

VIDEO_FPS = 10  # frames per second of test_depth.mp4


NETWORK_SCALE = "prediction: 1/depth (network's scale)"


def prediction_panel(depth: Tensor, label: str = NETWORK_SCALE) -> Panel:
    """(T, H, W) predicted depth -> its inverse colour-mapped on one range for the whole sequence
    (:func:`inverse_depth_range`; near is red, far is blue), with a colour bar, under ``label`` (its units)."""
    inverse = 1.0 / depth.detach().float().cpu().clamp(min=1e-6)
    return mapped(label, inverse, *inverse_depth_range(inverse))


def write_depth_maps(depth: Tensor, folder: Path, label: str = NETWORK_SCALE) -> Panel:
    """(T, H, W) depth -> ``folder/<t:06d>.npy`` (float32), ``.png`` (uint16, x1000: data, which looks black in
    an image viewer) and ``_color.png``: the :func:`prediction_panel` colours, enlarged one frame at a time to be
    seen (:func:`runner.logging.readable_size`). Returns that panel, for :func:`depth_video`."""
    folder.mkdir(parents=True, exist_ok=True)
    panel = prediction_panel(depth, label)
    for t, d in enumerate(depth.detach().float().cpu().numpy()):
        np.save(folder / f"{t:06d}.npy", d.astype(np.float32))
        iio.imwrite(folder / f"{t:06d}.png", np.clip(d * 1000, 0, 65535).round().astype(np.uint16))
        iio.imwrite(folder / f"{t:06d}_color.png", to_uint8(readable_size(panel.images[t : t + 1]))[0])
    return panel


def inverse_depth_range(inverse: Tensor) -> tuple[float, float]:
    """The 2 % and 98 % quantiles of inverse depths of any shape (of at most ~100k of them, evenly strided):
    a colour range that a few extreme pixels do not stretch."""
    values = inverse.detach().float().flatten().cpu()
    lo, hi = torch.quantile(values[:: max(1, values.numel() // 100_000)], torch.tensor([0.02, 0.98]))
    return float(lo), float(hi)


def depth_video(predictions: list[tuple[Sequence, Panel]]) -> Iterator[Tensor]:
    """Labelled frames of each sequence beside its predicted inverse depth, in chunks of (16, H', W', 3) for
    :func:`runner.visuals.write_video`.

    Args:
        predictions: each sequence with its :func:`prediction_panel` (T frames).
    """
    for seq, panel in predictions:
        for t in torch.split(torch.arange(len(seq)), 16):
            captions = [f"input: {seq.name}, frame {i + 1}/{len(seq)}" for i in t.tolist()]
            inputs = Panel(captions, seq.frames[t.to(seq.frames.device)].permute(0, 2, 3, 1))
            yield panel_row([inputs, Panel(panel.label, panel.images[t], panel.cmap, panel.ticks)])


def log_test_panels(
    logger: Logger, step: int, frames: Tensor, depth: Tensor, truth: Tensor | None, protocol: EvalProtocol
) -> None:
    """One labelled row (:func:`runner.visuals.panel_row`) per test frame: ``test/input|prediction|truth|abs_rel``
    (input | predicted and true inverse depth on one colour scale | abs_rel error, as the protocol scores it, see
    :func:`truth_panels`) or, without ground truth, ``test/input|prediction``.

    Args:
        frames: (B, 3, H, W) test frames.
        depth: (B, H, W) their predicted depth [network units].
        truth: (B, H, W) their ground-truth depth, or None.
    """
    inputs = Panel("input frame", frames.permute(0, 2, 3, 1))
    if truth is None:
        logger.images("test/input|prediction", panel_row([inputs, prediction_panel(depth)]), step)
    else:
        panels = truth_panels(depth, truth, protocol)
        logger.images("test/input|prediction|truth|abs_rel", panel_row([inputs, *panels]), step)


def truth_panels(depth: Tensor, gt: Tensor, protocol: EvalProtocol) -> list[Panel]:
    """Predicted and true inverse depth on one colour scale (the truth's 2-98 % range) and the abs_rel error
    (0 to 0.5, clipped), with each frame's mean in its caption; pixels without ground truth grey.

    Args:
        depth: (B, H, W) predicted depth [network units], scaled per frame by ``protocol.scaled_to_truth``.
        gt: (B, H, W) ground-truth depth; pixels outside the caps (and the Garg crop) are not scored.
    """
    scaled, mask = (torch.stack(x) for x in zip(*(protocol.scaled_to_truth(d, g) for d, g in zip(depth, gt))))
    inverse, true_inverse = 1 / scaled, 1 / gt.clamp(min=1e-6)
    lo, hi = inverse_depth_range(true_inverse[mask] if mask.any() else inverse)
    error = (scaled - gt).abs() / gt.clamp(min=1e-6)
    captions = [f"abs_rel error, mean {e[m].mean():.3f}" if m.any() else "abs_rel error" for e, m in zip(error, mask)]
    scaling = {"median": ", median-scaled", "gt": ", scaled to the truth", "none": ""}[protocol.scaling]
    return [
        mapped(f"prediction: 1/depth{scaling}", inverse, lo, hi),
        mapped("ground truth: 1/depth", true_inverse, lo, hi, valid=mask),
        mapped(captions, error, 0.0, 0.5, "inferno", valid=mask, ticks=("0", "0.5+")),
    ]


def log_training_views(logger: Logger, step: int, views: TrainingViews, source_offset: int) -> None:
    """The last training batch's first two snippets: ``train/target_vs_warped_source`` (the target beside the
    source at ``source_offset`` warped into it) and, with auto-masking, ``train/automask``."""
    target, warped = views.target[:2].permute(0, 2, 3, 1), views.warped[:2].permute(0, 2, 3, 1)
    source = f"source frame {source_offset:+d} warped to the target"
    row = panel_row([Panel("target frame (training batch)", target), Panel(source, warped)])
    logger.images("train/target_vs_warped_source", row, step)
    if views.mask is not None:
        row = panel_row([Panel("auto-mask: white pixels enter the loss", grey(views.mask[:2, 0]))])
        logger.images("train/automask", row, step)


def write_run_artifacts(out_dir: Path, weights: dict, predictions: list[tuple[Sequence, Tensor]]) -> None:
    """``weights.pt``, each sequence's predicted depth (:func:`write_depth_maps`), ``test_depth.mp4`` (``.gif``
    without ffmpeg: every frame beside its predicted inverse depth) and a ``README.txt`` saying what they are.

    Args:
        weights: the state dicts ``depth_net`` and ``pose_net`` and the depth range ``min_depth``, ``max_depth``.
        predictions: each test sequence with its predicted depth (T, H, W) [network units].
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(weights, out_dir / "weights.pt")
    panels = [(seq, write_depth_maps(pred, out_dir / "test_depth" / seq.name)) for seq, pred in predictions]
    gif_every = max(1, math.ceil(sum(len(seq) for seq, _ in panels) / 150))  # a GIF of <= 150 frames
    write_video(out_dir / "test_depth", depth_video(panels), VIDEO_FPS, gif=False, gif_every=gif_every)
    (out_dir / "README.txt").write_text(
        "weights.pt: depth_net and pose_net state dicts, the depth range and the image size trained at\n"
        "(torch.load(..., weights_only=True)).\n"
        "test_depth/<sequence>/<frame>.npy: predicted depth in the network's own (monocular, unknown) scale;\n"
        "<frame>.png: the same as 16-bit PNG in 1/1000 units; <frame>_color.png: inverse depth to look at.\n"
        "test_depth.mp4 (test_depth.gif without imageio-ffmpeg): the test frames beside their predicted inverse\n"
        "depth.\n"
    )


def write_fit_artifacts(
    out_dir: Path, seq: Sequence, depth: Tensor, camera: PinholeCamera, estimated: bool, metres: bool
) -> None:
    """What ``mode=fit`` leaves: ``depth/<sequence>/`` (:func:`write_depth_maps`), ``depth.mp4`` (``.gif`` without
    ffmpeg), ``trajectory.txt`` (:func:`write_tum_trajectory`), ``intrinsics.json``, ``points.ply``
    (:func:`write_point_cloud`) and a ``README.txt`` saying what they are.

    Args:
        seq: the fitted video, frames (T, 3, H, W).
        depth: (T, H, W) its fitted depth [gauge units, or metres].
        camera: the T fitted cameras: K and ``cam_from_world`` with frame 0 as the world.
        estimated: the intrinsics were estimated (not given by the data source).
        metres: depth and camera are in metres (one known length gave the scale), else in the fit's own scale.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    unit = "in metres" if metres else "in the fit's own scale (frame 0's mean log depth is fixed)"
    label = "fit: 1/depth [1/m]" if metres else "fit: 1/depth (the fit's own scale)"
    panel = write_depth_maps(depth, out_dir / "depth" / seq.name, label)
    write_video(
        out_dir / "depth",
        depth_video([(seq, panel)]),
        VIDEO_FPS,
        gif=False,
        gif_every=max(1, math.ceil(len(seq) / 150)),
    )
    write_tum_trajectory(out_dir / "trajectory.txt", camera.world_from_cam)
    write_intrinsics(out_dir / "intrinsics.json", camera.K[0], camera.image_size, estimated=estimated)
    write_point_cloud(out_dir / "points.ply", seq.frames, depth, camera)
    (out_dir / "README.txt").write_text(
        f"depth/{seq.name}/<frame>.npy: fitted depth {unit};\n"
        "<frame>.png: the same as 16-bit PNG in 1/1000 units; <frame>_color.png: inverse depth to look at.\n"
        "depth.mp4 (depth.gif without imageio-ffmpeg): every frame beside its fitted inverse depth.\n"
        "trajectory.txt: the camera of every frame in TUM format (timestamp = frame index, tx ty tz qx qy qz qw:\n"
        "camera-to-world, frame 0 is the world).\n"
        "intrinsics.json: fx, fy, cx, cy [px] for width x height; estimated: whether the fit estimated them.\n"
        "points.ply: every frame's pixels back-projected into frame 0's camera, coloured (MeshLab, CloudCompare).\n"
    )


def write_tum_trajectory(path: Path, world_from_cam: Tensor) -> None:
    """(T, 4, 4) camera-to-world poses -> ``path`` in TUM format, one line per frame: ``t tx ty tz qx qy qz qw`` with
    the frame index as the timestamp."""
    M = world_from_cam.detach().double().cpu()
    q = rotation_to_quaternion(M[:, :3, :3])
    lines = [
        " ".join([str(t), *(f"{v:.9f}" for v in (*M[t, :3, 3].tolist(), *q[t, 1:].tolist(), q[t, 0].item()))])
        for t in range(len(M))
    ]
    path.write_text("# timestamp tx ty tz qx qy qz qw\n" + "\n".join(lines) + "\n")


def rotation_to_quaternion(R: Tensor) -> Tensor:
    """(N, 3, 3) rotation matrices -> (N, 4) unit quaternions (w, x, y, z) with w >= 0 (Shepperd's method: each from
    its largest diagonal term, stable near 180 degrees)."""
    m = R
    trace = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    candidates = torch.stack(
        [
            torch.stack([1 + trace, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1),
            torch.stack(
                [m[:, 2, 1] - m[:, 1, 2], 1 + 2 * m[:, 0, 0] - trace, m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0]],
                -1,
            ),
            torch.stack(
                [m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0], 1 + 2 * m[:, 1, 1] - trace, m[:, 1, 2] + m[:, 2, 1]],
                -1,
            ),
            torch.stack(
                [m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1], 1 + 2 * m[:, 2, 2] - trace],
                -1,
            ),
        ],
        1,
    )  # (N, 4 candidates, 4): candidate k is 4 q_k q
    best = torch.stack([trace, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], -1).argmax(-1)
    q = candidates[torch.arange(len(m)), best]
    q = q / q.norm(dim=-1, keepdim=True)
    return q * torch.where(q[:, :1] < 0, -1.0, 1.0)


def write_point_cloud(
    path: Path, frames: Tensor, depth: Tensor, camera: PinholeCamera, max_points: int = 500_000
) -> None:
    """Every frame's pixels back-projected with their depth into the world (frame 0's camera), coloured by the frame,
    as a binary little-endian PLY of at most ``max_points`` points (every k-th frame when more).

    Args:
        frames: (T, 3, H, W) RGB in [0, 1].
        depth: (T, H, W) depth in ``camera``'s units.
        camera: the T cameras (K, ``cam_from_world``).
    """
    T, _, H, W = frames.shape
    every = max(1, math.ceil(T * H * W / max_points))
    v, u = torch.meshgrid(torch.arange(H, dtype=depth.dtype), torch.arange(W, dtype=depth.dtype), indexing="ij")
    pix = torch.stack([u, v], -1).reshape(1, H * W, 2).to(depth.device)
    points, colours = [], []
    for t in range(0, T, every):
        points.append(camera[t : t + 1].unproject(pix, depth[t].reshape(1, H * W))[0])
        colours.append(frames[t].reshape(3, H * W).T)
    xyz = torch.cat(points).detach().float().cpu().numpy()
    rgb = (torch.cat(colours).detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    vertex = np.empty(
        len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    )
    vertex["x"], vertex["y"], vertex["z"] = xyz.T
    vertex["red"], vertex["green"], vertex["blue"] = rgb.T
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(vertex)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    path.write_bytes(header.encode("ascii") + vertex.tobytes())  # save_ply writes meshes: it refuses zero faces
