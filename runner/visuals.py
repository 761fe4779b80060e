"""Pictures and videos of results, made to be looked at: labelled rows of panels with colour bars, silhouette
outlines, and animations written as MP4 and GIF.

Images are (B, H, W, 3) float RGB in [0, 1], as :class:`runner.logging.Logger` takes them. Small frames are
enlarged by a whole factor with nearest-neighbour (:func:`runner.logging.readable_scale`), so that their
pixels stay sharp squares and a 32 px frame becomes a 256 px one. Captions are drawn with Pillow's built-in
font (Pillow comes with imageio).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from runner.logging import colorize, enlarge, readable_scale

log = logging.getLogger("dwx")

BACKGROUND = 0.2  # grey of the gutters and caption bands
TEXT = 0.95  # grey of the captions
NO_DATA = 0.45  # grey of the pixels a colour-mapped panel has no value for (``valid`` False)
FONT_SIZE = 20  # [px]
GAP = 8  # gutter between and around the panels [px]
BAR_WIDTH = 14  # width of a colour bar's gradient [px]


@dataclass(frozen=True)
class Panel:
    """One column of a :func:`panel_row`.

    Attributes:
        label: the caption above the column, or one caption per row (image) of the batch.
        images: (B, H, W, 3) RGB in [0, 1].
        cmap: for a colour-mapped panel (:func:`mapped`), the colour map of its colour bar; None: no bar.
        ticks: the colour bar's captions at its bottom and top end (the range's min and max).
    """

    label: str | Sequence[str]
    images: Tensor
    cmap: str | None = None
    ticks: tuple[str, str] = ("", "")


def mapped(
    label: str | Sequence[str],
    values: Tensor,
    vmin: float,
    vmax: float,
    cmap: str = "turbo",
    valid: Tensor | None = None,
    ticks: tuple[str, str] | None = None,
) -> Panel:
    """A colour-mapped panel with a colour bar: (B, H, W) ``values`` coloured by ``cmap`` on [vmin, vmax]
    (clipped beyond), so that panels given the same range map equal values to equal colours.

    Args:
        valid: (B, H, W) bool, False where there is no value (shown grey), or None.
        ticks: the colour bar's captions at vmin and vmax; default the values themselves.
    """
    rgb = colorize(values.detach().float().cpu(), vmin, vmax, cmap)
    if valid is not None:
        rgb = torch.where(valid.cpu()[..., None], rgb, torch.tensor(NO_DATA))
    return Panel(label, rgb, cmap, ticks or (f"{vmin:.3g}", f"{vmax:.3g}"))


def panel_row(panels: Sequence[Panel], min_height: int = 256, max_width: int = 4096) -> Tensor:
    """Panels side by side, each under its caption and, if colour-mapped, beside its colour bar.

    All panels' images are enlarged by one whole factor (nearest-neighbour) so that they are at least
    ``min_height`` px tall, unless all of them side by side would then be wider than ``max_width``.

    Args:
        panels: images (B, H, W_i, 3) of one height and batch size.
    Returns:
        (B, caption + scale H + gap, width, 3) in [0, 1]: one row per batch element.
    """
    heights = {p.images.shape[:2] for p in panels}
    if len(heights) != 1:
        raise ValueError(f"panels of one row need one batch size and height, got (B, H) {sorted(heights)}")
    B, H = heights.pop()
    scale = readable_scale(H, sum(p.images.shape[2] for p in panels), min_height, max_width)
    caption = _caption_height()
    columns = [_column(p, enlarge(p.images.detach().float().cpu(), scale), caption) for p in panels]
    gap = torch.full((B, caption + scale * H + GAP, GAP, 3), BACKGROUND)
    return torch.cat([gap, *[x for column in columns for x in (column, gap)]], dim=2)


def grey(values: Tensor) -> Tensor:
    """(B, H, W) values in [0, 1] -> (B, H, W, 3) grey images (0 black, 1 white), for a :class:`Panel`."""
    return values[..., None].expand(*values.shape, 3)


def outline(images: Tensor, masks: Tensor, color: tuple[float, float, float] = (1.0, 0.0, 0.0)) -> Tensor:
    """(B, H, W, 3) images with the outline of (B, H, W) masks (> 0.5 inside) drawn over them in ``color``,
    2 px wide (one inside, one outside the boundary). Enlarge both first (:func:`runner.logging.enlarge`) for
    a line thinner than the images' pixels."""
    inside = (masks > 0.5).float()[:, None]
    grown = F.max_pool2d(inside, 3, stride=1, padding=1)
    shrunk = -F.max_pool2d(-inside, 3, stride=1, padding=1)
    edge = (grown - shrunk)[:, 0, ..., None] > 0
    return torch.where(edge, torch.tensor(color, dtype=images.dtype), images)


def to_uint8(images: Tensor) -> np.ndarray:
    """(..., 3) floats in [0, 1] -> uint8 pixels as numpy."""
    return (images.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()


@functools.cache
def mp4_available() -> bool:
    """Whether MP4 can be written: imageio-ffmpeg (``pip install dwx[video]``) and its ffmpeg binary."""
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return False
    return True


def write_video(
    stem: Path, frames: Tensor | Iterable[Tensor], fps: float, gif: bool = True, gif_every: int = 1
) -> list[Path]:
    """An animation as ``stem.mp4`` (H.264, when :func:`mp4_available`) and ``stem.gif``.

    Chunks are encoded as they come, so a long video need not be in memory at full size; the GIF keeps its
    frames (as uint8) until it is written.

    Args:
        frames: (T, H, W, 3) in [0, 1], or an iterable of such chunks. The MP4 is padded with gutter grey to
            an even height and width (H.264's 4:2:0 colour needs that).
        fps: frames per second.
        gif: write the GIF too; False writes it only in place of an MP4 that cannot be written.
        gif_every: the GIF keeps every ``gif_every``-th frame, each shown ``gif_every`` times as long.
    Returns:
        The files written.
    """
    mp4 = stem.with_suffix(".mp4") if mp4_available() else None
    if mp4 is None:
        log.info("no %s (MP4 needs imageio-ffmpeg: pip install 'dwx[video]')", stem.with_suffix(".mp4").name)
    chunks = [frames] if isinstance(frames, Tensor) else frames
    writer, kept, count = None, [], 0
    try:
        for chunk in chunks:
            pixels = to_uint8(chunk)
            if mp4 is not None:
                if writer is None:
                    writer = _mp4_writer(mp4, pixels.shape[1:3], fps)
                for frame in pixels:
                    writer.send(_even(frame))
            if gif or mp4 is None:
                kept.extend(pixels[(-count) % gif_every :: gif_every])
            count += len(pixels)
    finally:
        if writer is not None:
            writer.close()  # ends ffmpeg, also when a chunk failed
    written = [] if writer is None else [mp4]
    if kept:
        import imageio.v3 as iio

        iio.imwrite(stem.with_suffix(".gif"), np.stack(kept), duration=1000 * gif_every / fps, loop=0)
        written.append(stem.with_suffix(".gif"))
    return written


def _mp4_writer(path: Path, size: tuple[int, int], fps: float):
    """A started imageio-ffmpeg generator that takes (H, W, 3) uint8 frames of ``size`` (H, W) rounded up to
    even numbers (:func:`_even`)."""
    import imageio_ffmpeg

    H, W = (s + s % 2 for s in size)
    writer = imageio_ffmpeg.write_frames(
        str(path), (W, H), fps=fps, quality=8, macro_block_size=1, ffmpeg_log_level="error"
    )
    writer.send(None)
    return writer


def _even(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 padded at the bottom and right with gutter grey to an even height and width."""
    H, W = frame.shape[:2]
    if H % 2 == 0 and W % 2 == 0:
        return np.ascontiguousarray(frame)
    return np.pad(frame, ((0, H % 2), (0, W % 2), (0, 0)), constant_values=round(BACKGROUND * 255))


def _column(panel: Panel, images: Tensor, caption: int) -> Tensor:
    """(B, h, w, 3) enlarged images -> (B, caption + h + GAP, w [+ colour bar], 3): caption band above, the
    colour bar (if any) to the right, gutter grey below."""
    if panel.cmap is not None:
        images = torch.cat([images, _colour_bar(images.shape[0], images.shape[1], panel.cmap, panel.ticks)], dim=2)
    B, h, w = images.shape[:3]
    labels = [panel.label] * B if isinstance(panel.label, str) else list(panel.label)
    if len(labels) != B:
        raise ValueError(f"a panel of {B} images needs one label or {B}, got {len(labels)}")
    bands = torch.stack([_text_band(text, w, caption) for text in labels])
    return torch.cat([bands, images, torch.full((B, GAP, w, 3), BACKGROUND)], dim=1)


def _colour_bar(B: int, height: int, cmap: str, ticks: tuple[str, str]) -> Tensor:
    """(B, height, width, 3): a gutter, the vertical gradient of ``cmap`` (its first colour at the bottom),
    and the ticks' captions beside its bottom and top end."""
    gradient = colorize(torch.linspace(1, 0, height)[:, None].expand(height, BAR_WIDTH), 0.0, 1.0, cmap)
    bottom, top = (_text(t) for t in ticks)
    text_width = max(bottom.shape[1], top.shape[1])
    column = torch.zeros(height, text_width)
    for mask, row in ((top, 0), (bottom, max(0, height - bottom.shape[0]))):
        h = min(mask.shape[0], height)
        column[row : row + h, : mask.shape[1]] = mask[:h]
    text = BACKGROUND + (TEXT - BACKGROUND) * column[..., None].expand(height, text_width, 3)
    gutter = torch.full((height, GAP // 2, 3), BACKGROUND)
    return torch.cat([gutter, gradient, gutter, text], dim=1).expand(B, -1, -1, -1)


def _text_band(text: str, width: int, height: int) -> Tensor:
    """(height, width, 3): ``text`` in caption grey on gutter grey, left-aligned and cut at ``width``."""
    mask = _text(text)[:height, :width]
    band = torch.zeros(height, width)
    top = (height - mask.shape[0]) // 2
    band[top : top + mask.shape[0], : mask.shape[1]] = mask
    return BACKGROUND + (TEXT - BACKGROUND) * band[..., None].expand(height, width, 3)


def _caption_height() -> int:
    """Height of a caption band [px]: a line of text and a margin above and below."""
    return _text("Ag").shape[0] + 8


@functools.cache
def _font():
    """Pillow's built-in scalable font at :data:`FONT_SIZE`; its older fixed bitmap font (~11 px) without
    FreeType or before Pillow 10.1."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


@functools.lru_cache(maxsize=512)
def _text(text: str) -> Tensor:
    """(h, w) coverage in [0, 1] of ``text`` drawn in :func:`_font`; h is the font's line height (ascender
    to descender), the same for every text."""
    from PIL import Image, ImageDraw

    font = _font()
    height = font.getbbox("Agjy|")[3]
    image = Image.new("L", (max(1, font.getbbox(text)[2]), height))
    ImageDraw.Draw(image).text((0, 0), text, fill=255, font=font)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
