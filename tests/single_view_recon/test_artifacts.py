"""What a person looks at after a single_view_recon fit: the turntable (GIF and MP4) and the input overlay."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import torch
from hydra.utils import instantiate

from runner import visuals
from tests.conftest import compose_config


def test_fit_saves_a_turntable_video_and_the_input_views_with_the_fitted_outline(tmp_path, monkeypatch):
    monkeypatch.setenv("DWX_CACHE", str(tmp_path / "cache"))
    task = instantiate(compose_config(["task=single_view_recon", "experiment=recon_tiny_fit"]).task, _convert_="all")
    task.setup(torch.device("cpu"))  # the template sphere is the reconstruction
    task.save(tmp_path)
    for suffix in ("gif", "mp4") if visuals.mp4_available() else ("gif",):
        turntable = iio.imread(tmp_path / f"reconstruction_turntable.{suffix}", index=None)
        assert turntable.shape == (24, 256, 256, 3), suffix  # 32 px views, enlarged 8x
    overlay = iio.imread(tmp_path / "input_overlay.png")
    # the two fitted views (task.fit=[0, 1]) enlarged 8x under captions, the sphere's outline red
    assert 256 < overlay.shape[0] < 320 and 2 * 256 < overlay.shape[1] < 2 * 256 + 40
    red = np.all(overlay == [255, 0, 0], axis=-1)
    assert 500 < red.sum() < 10_000 and red[:, : overlay.shape[1] // 2].any() and red[:, overlay.shape[1] // 2 :].any()
