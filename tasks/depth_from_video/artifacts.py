"""What depth_from_video leaves for people to look at and for other tools to read: per-frame depth maps
(``.npy`` data, 16-bit PNG, a colour-mapped preview) and the video of frames beside their predicted depth.
Used by the task's ``save`` and by ``dwx predict``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor

from runner.logging import readable_size
from runner.visuals import Panel, mapped, panel_row, to_uint8
from tasks.depth_from_video.data import Sequence


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
