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
from tasks.depth_from_video.data import Sequence

if TYPE_CHECKING:  # dwx predict imports this module: it needs neither the loss nor the evaluation
    from tasks.depth_from_video.evaluation import EvalProtocol
    from tasks.depth_from_video.objective import TrainingViews

VIDEO_FPS = 10  # frames per second of test_depth.mp4


def prediction_panel(depth: Tensor) -> Panel:
    """(T, H, W) predicted depth [network units] -> its inverse colour-mapped on one range for the whole
    sequence (:func:`inverse_depth_range`; near is red, far is blue), with a colour bar."""
    inverse = 1.0 / depth.detach().float().cpu().clamp(min=1e-6)
    return mapped("prediction: 1/depth (network's scale)", inverse, *inverse_depth_range(inverse))


def write_depth_maps(depth: Tensor, folder: Path) -> Panel:
    """(T, H, W) depth -> ``folder/<t:06d>.npy`` (float32), ``.png`` (uint16, x1000: data, which looks black in
    an image viewer) and ``_color.png``: the :func:`prediction_panel` colours, enlarged one frame at a time to be
    seen (:func:`runner.logging.readable_size`). Returns that panel, for :func:`depth_video`."""
    folder.mkdir(parents=True, exist_ok=True)
    panel = prediction_panel(depth)
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
        "weights.pt: depth_net and pose_net state dicts (torch.load(..., weights_only=True)).\n"
        "test_depth/<sequence>/<frame>.npy: predicted depth in the network's own (monocular, unknown) scale;\n"
        "<frame>.png: the same as 16-bit PNG in 1/1000 units; <frame>_color.png: inverse depth to look at.\n"
        "test_depth.mp4 (test_depth.gif without imageio-ffmpeg): the test frames beside their predicted inverse\n"
        "depth.\n"
    )
