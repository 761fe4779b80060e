"""What a person looks at after a physical_params fit: labelled truth | estimate frames and animations."""

from __future__ import annotations

import imageio.v3 as iio
import torch
from hydra.utils import instantiate

from runner import visuals
from tests.conftest import RecordingLogger
from tests.physical_params.conftest import compose_task


def test_truth_beside_estimate_as_images_gif_and_mp4(tmp_path):
    task = instantiate(compose_task(["scene=projectile", "experiment=physics_tiny"]).task, _convert_="all")
    task.setup(torch.device("cpu"))  # the initial guess is the estimate
    logger = RecordingLogger()
    task.visuals(logger, 2)
    # 4 of the 16 frames, each a row of two labelled 32 px frames enlarged 8x
    rows, height, width, _ = logger.images_by_tag["frames/target|estimate"].shape
    assert rows == 4 and 256 < height < 320 and 2 * 256 < width < 2 * 256 + 40
    assert logger.videos_by_tag["video/target|estimate"].shape[0] == 16
    task.save(tmp_path)
    written = ["estimate.gif", "estimate.mp4"] if visuals.mp4_available() else ["estimate.gif"]
    for name in written:
        video = iio.imread(tmp_path / name, index=None)
        assert video.shape[0] == 16 and video.shape[1:3] == (height, width), name
