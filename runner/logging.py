"""Where a run's numbers and pictures go: TensorBoard (``tb/``) behind a small ``Logger`` protocol.

Tasks only see the protocol, so tests and benchmarks can pass :class:`NullLogger`. Images are NHWC
float in [0, 1]; single-channel (B, H, W) data is colour-mapped (turbo) after normalising to its range.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor


class Logger(Protocol):
    def scalars(self, values: Mapping[str, float], step: int) -> None: ...

    def images(self, tag: str, images: Tensor, step: int, max_images: int = 4) -> None:
        """``images``: (B, H, W, 3) RGB in [0, 1], or (B, H, W) single-channel data (colour-mapped)."""
        ...

    def mesh(self, tag: str, verts: Tensor, faces: Tensor, colors: Tensor | None, step: int) -> None:
        """One mesh: verts (V, 3), faces (F, 3), optional colours (V, 3) in [0, 1]."""
        ...

    def video(self, tag: str, frames: Tensor, step: int, fps: int = 15) -> None:
        """``frames``: (T, H, W, 3) in [0, 1]."""
        ...

    def text(self, tag: str, text: str, step: int) -> None: ...

    def hparams(self, params: Mapping[str, object], metrics: Mapping[str, float]) -> None: ...

    def close(self) -> None: ...


class NullLogger:
    """Discards everything (tests, benchmarks, non-zero ranks)."""

    def scalars(self, values, step):
        pass

    def images(self, tag, images, step, max_images=4):
        pass

    def mesh(self, tag, verts, faces, colors, step):
        pass

    def video(self, tag, frames, step, fps=15):
        pass

    def text(self, tag, text, step):
        pass

    def hparams(self, params, metrics):
        pass

    def close(self):
        pass


# Polynomial fits of two colour maps, coefficients of t^0 .. t^6 per channel (r, g, b): Google's Turbo
# (Mikhailov 2019) for values such as inverse depth, and matplotlib's Inferno (fit by Matt Zucker) for errors.
COLOR_MAPS = {
    "turbo": (
        (0.1357, 4.5974, -42.3277, 130.5887, -150.5666, 58.1375, 0.0),
        (0.0914, 2.1856, 4.8052, -14.0195, 4.2109, 2.7747, 0.0),
        (0.1067, 12.5925, -60.1097, 109.0745, -88.5066, 26.8183, 0.0),
    ),
    "inferno": (
        (0.0002189, 0.1065134, 11.6024931, -41.7039961, 77.1629357, -71.3194282, 25.1311262),
        (0.0016510, 0.5639564, -3.9728540, 17.4363989, -33.4023589, 32.6260643, -12.2426690),
        (-0.0194809, 3.9327124, -15.9423941, 44.3541452, -81.8073093, 73.2095199, -23.0703250),
    ),
}


def colorize(values: Tensor, vmin: float | None = None, vmax: float | None = None, cmap: str = "turbo") -> Tensor:
    """(...) scalars -> (..., 3) colours in [0, 1] of ``cmap`` (:data:`COLOR_MAPS`): ``vmin`` maps to its first
    colour, ``vmax`` to its last, values beyond are clipped (range: the values' own unless given)."""
    v = values.detach().float()
    lo = v.amin() if vmin is None else torch.tensor(vmin)
    hi = v.amax() if vmax is None else torch.tensor(vmax)
    t = ((v - lo) / (hi - lo).clamp(min=1e-12)).clamp(0, 1)
    channels = []
    for coefficients in COLOR_MAPS[cmap]:
        c = torch.full_like(t, coefficients[-1])
        for a in reversed(coefficients[:-1]):  # Horner
            c = c * t + a
        channels.append(c)
    return torch.stack(channels, -1).clamp(0, 1)


def to_rgb_images(images: Tensor) -> Tensor:
    """(B, H, W) or (B, H, W, 1) data -> colour-mapped (B, H, W, 3); (B, H, W, 3) is clamped to [0, 1]."""
    images = images.detach().float().cpu()
    if images.dim() == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.dim() == 3:
        return colorize(images)
    if images.dim() == 4 and images.shape[-1] == 3:
        return images.clamp(0, 1)
    raise ValueError(f"images must be (B, H, W), (B, H, W, 1) or (B, H, W, 3), got {tuple(images.shape)}")


def readable_scale(height: int, width: int, min_height: int = 256, max_width: int = 2048) -> int:
    """The whole factor that enlarges a ``height`` x ``width`` image to at least ``min_height`` rows, unless that
    would make it wider than ``max_width`` (then the largest factor that does not; at least 1)."""
    return max(1, min(-(-min_height // height), max_width // width))


def enlarge(images: Tensor, scale: int) -> Tensor:
    """(B, H, W, C) -> (B, scale H, scale W, C) by nearest-neighbour: every pixel becomes a sharp square."""
    return images.repeat_interleave(scale, 1).repeat_interleave(scale, 2) if scale > 1 else images


def readable_size(images: Tensor, min_height: int = 256, max_width: int = 2048) -> Tensor:
    """(B, H, W, 3) images enlarged by a whole factor with nearest-neighbour (pixels stay sharp squares) so
    that they are at least ``min_height`` tall, unless that would make them wider than ``max_width``
    (:func:`readable_scale`).

    TensorBoard shows an image at its own size: a 64x192 training view would be a thumbnail.
    """
    return enlarge(images, readable_scale(*images.shape[1:3], min_height, max_width))


def _hparam_value(value) -> float | str | bool:
    """A value the HParams tab shows as the user wrote it: bools and floats as such, the rest as text."""
    if isinstance(value, (bool, float, str)):
        return value
    return str(value) if isinstance(value, int) else json.dumps(value)


class TensorBoardLogger:
    """Writes TensorBoard event files into ``log_dir``."""

    def __init__(self, log_dir: str | Path):
        from torch.utils.tensorboard import SummaryWriter  # imported lazily: pulls in tensorboard

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(str(self.log_dir))
        self._charted = False

    def scalars(self, values, step):
        for k, v in values.items():
            self.writer.add_scalar(k, float(v), step)
        if not self._charted:
            self._chart_against_baselines(values)

    def _chart_against_baselines(self, values) -> None:
        """Once the metrics are known: a chart per metric with a constant baseline (``metric/baseline_<m>``)
        that draws the two as lines side by side (TensorBoard's Custom Scalars tab)."""
        if not any(k.startswith("metric/") for k in values):
            return
        pairs = [k for k in values if k.startswith("metric/") and f"metric/baseline_{k[7:]}" in values]
        self._charted = True  # add_custom_scalars may be called once per writer
        if pairs:
            charts = {k[7:]: ["Multiline", [k, f"metric/baseline_{k[7:]}"]] for k in pairs}
            self.writer.add_custom_scalars({"metric against its constant baseline": charts})

    def images(self, tag, images, step, max_images=4):
        """Up to ``max_images`` images as one picture, one above the other (TensorBoard would tile a batch
        side by side, and then shrink the wide strip to its card's width)."""
        rgb = readable_size(to_rgb_images(images[:max_images]))
        column = torch.cat(list(rgb), dim=0)[None]  # (1, B*H, W, 3)
        self.writer.add_images(tag, column.numpy(), step, dataformats="NHWC")

    def mesh(self, tag, verts, faces, colors, step):
        v = verts.detach().float().cpu()[None]
        f = faces.detach().cpu().to(torch.int32)[None]
        c = None if colors is None else (colors.detach().float().cpu().clamp(0, 1) * 255).to(torch.uint8)[None]
        self.writer.add_mesh(tag, vertices=v, faces=f, colors=c, global_step=step)

    def video(self, tag, frames, step, fps=15):
        # add_video needs moviepy<2 and writes nothing without it; an animated GIF through the image
        # summary's encoder would need the same. Log the frames as an image strip instead, which always works,
        # and leave videos on disk to the task's artifacts.
        frames = to_rgb_images(frames)
        T = frames.shape[0]
        idx = np.linspace(0, T - 1, num=min(T, 8)).round().astype(int)
        strip = readable_size(torch.cat(list(frames[idx]), dim=1)[None])
        self.writer.add_images(tag, strip.numpy(), step, dataformats="NHWC")

    def text(self, tag, text, step):
        self.writer.add_text(tag, text, step)

    def hparams(self, params, metrics):
        """The run's overrides and final metrics for TensorBoard's HParams tab.

        The metrics are declared by the tags the loop already logs (``metric/<name>``, the first of
        ``metrics`` first: the main metric), so the tab reads their last values and no second copy of them
        clutters the scalars tab. Integers (seeds, step counts) are shown as written, not as floats.
        """
        from torch.utils.tensorboard.summary import hparams

        clean = {k: _hparam_value(v) for k, v in params.items()}
        declared = {f"metric/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        for summary in hparams(clean, declared):
            self.writer.file_writer.add_summary(summary)

    def close(self):
        self.writer.flush()
        self.writer.close()
