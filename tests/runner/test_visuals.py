"""runner.visuals: labelled panel rows with colour bars, outlines, and MP4 / GIF animations."""

from __future__ import annotations

import imageio.v3 as iio
import pytest
import torch

from runner import visuals
from runner.visuals import GAP, Panel, grey, mapped, outline, panel_row, write_video
from tests.conftest import missing_tool


def test_a_row_enlarges_small_panels_to_256_px_and_puts_each_image_in_its_column():
    images = torch.rand(2, 32, 48, 3)
    values = torch.rand(2, 32, 48)
    row = panel_row([Panel("input", images), mapped("value", values, 0.0, 1.0), Panel(["a", "b"], grey(values))])
    caption = row.shape[1] - 256 - GAP
    assert row.shape[0] == 2 and caption > 10  # 32 px enlarged 8x, under a caption band
    body = row[:, caption : caption + 256]
    assert torch.equal(body[:, ::8, GAP : GAP + 384 : 8], images)  # nearest-neighbour: 8x8 squares
    bar_start = 2 * GAP + 384 + 384  # the second column's image, then its colour bar
    assert torch.all(body[:, :, bar_start : bar_start + GAP // 2] == visuals.BACKGROUND)  # a gutter before the bar
    gradient = body[0, :, bar_start + GAP // 2 + visuals.BAR_WIDTH // 2]
    assert torch.allclose(gradient[-1], mapped("", torch.zeros(1, 1, 1), 0.0, 1.0).images[0, 0, 0], atol=0.02)
    assert torch.allclose(gradient[0], mapped("", torch.ones(1, 1, 1), 0.0, 1.0).images[0, 0, 0], atol=0.02)
    assert torch.equal(body[:, ::8, -GAP - 384 : -GAP : 8], grey(values))  # the last column, without a bar


def test_panels_with_one_range_map_equal_values_to_equal_colours():
    truth = torch.linspace(0.1, 2.0, 64).reshape(1, 8, 8)
    prediction = truth.clone()
    prediction[0, 0] = 5.0  # beyond the range: clipped to its top colour
    valid = torch.ones_like(truth, dtype=torch.bool)
    valid[0, -1, -1] = False
    a = mapped("prediction", prediction, 0.1, 2.0).images
    b = mapped("truth", truth, 0.1, 2.0, valid=valid).images
    assert torch.equal(a[0, 1:-1], b[0, 1:-1])
    assert torch.equal(a[0, 0, 0], mapped("", torch.full((1, 1, 1), 2.0), 0.1, 2.0).images[0, 0, 0])  # vmax's
    assert torch.all(b[0, -1, -1] == visuals.NO_DATA)  # no value: grey
    assert mapped("error", truth, 0.0, 0.5, cmap="inferno", ticks=("0", "0.5+")).ticks == ("0", "0.5+")


def test_a_row_needs_one_height():
    with pytest.raises(ValueError, match="one batch size and height"):
        panel_row([Panel("a", torch.rand(1, 8, 8, 3)), Panel("b", torch.rand(1, 9, 8, 3))])


def test_outline_marks_the_boundary_of_a_mask():
    masks = torch.zeros(1, 16, 16)
    masks[0, 4:12, 4:12] = 1
    drawn = outline(torch.zeros(1, 16, 16, 3), masks)
    red = (drawn[0] == torch.tensor([1.0, 0.0, 0.0])).all(-1)
    assert red[3, 3:13].all() and red[4, 4:12].all() and red[11, 4:12].all()  # one pixel out, one in
    assert not red[5:11, 5:11].any() and not red[0].any()


def frames(T: int = 5, H: int = 21, W: int = 30) -> torch.Tensor:
    """(T, H, W, 3) frames that all differ (a GIF merges equal neighbours into one frame)."""
    return torch.rand(T, H, W, 3, generator=torch.Generator().manual_seed(0))


def test_write_video_writes_an_mp4_and_a_gif_that_decode(tmp_path):
    if not visuals.mp4_available():
        missing_tool("imageio-ffmpeg is not installed (pip install -e '.[video]'); MP4 writing is not tested")
    chunks = [frames()[:2], frames()[2:]]  # streamed in chunks
    written = write_video(tmp_path / "clip", chunks, fps=10)
    assert written == [tmp_path / "clip.mp4", tmp_path / "clip.gif"]
    assert iio.imread(tmp_path / "clip.mp4", index=None).shape == (5, 22, 30, 3)  # padded to even for H.264
    assert iio.imread(tmp_path / "clip.gif", index=None).shape == (5, 21, 30, 3)


def test_without_ffmpeg_a_gif_takes_the_mp4s_place(tmp_path, monkeypatch):
    monkeypatch.setattr(visuals, "mp4_available", lambda: False)
    written = write_video(tmp_path / "clip", frames(), fps=10, gif=False, gif_every=2)
    assert written == [tmp_path / "clip.gif"] and not (tmp_path / "clip.mp4").exists()
    gif = iio.imread(tmp_path / "clip.gif", index=None)
    assert gif.shape == (3, 21, 30, 3)  # frames 0, 2, 4
    assert iio.improps(tmp_path / "clip.gif", index=None).n_images == 3
