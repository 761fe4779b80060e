"""The coarse phase of training: progressive resizing (as fast.ai's and EfficientNetV2's progressive learning).

The first ``steps`` steps train on frames area-downsampled by ``factor`` (intrinsics rescaled to match), the rest at
full resolution: the coarse depth layout at a fraction of the cost of a full-resolution step (the networks are
fully convolutional). Evaluation in that phase scores the networks at the coarse size.
"""

from __future__ import annotations

import logging
import math

from torch import Tensor

from runner.errors import ConfigError
from runner.geometry.warping import resize_intrinsics
from tasks.depth_from_video.data import resize_frames
from tasks.depth_from_video.snippets import Batch

log = logging.getLogger("dwx")


class CoarsePhase:
    """Which steps train on downsampled frames, and at what size.

    Args:
        steps: the first ``steps`` training steps are coarse; 0 = full resolution throughout.
        factor: downsampling factor of the coarse frames, >= 1.
        stride: the depth network's stride: each coarse side is a multiple of it.

    Attributes:
        active: the last training batch was coarse (:meth:`resize_batch`): evaluation then reads the frames at
            that size (:meth:`at_training_size`).

    Raises:
        ConfigError: ``steps`` < 0 or ``factor`` < 1.
    """

    def __init__(self, steps: int, factor: float, stride: int):
        if steps < 0 or not factor >= 1:
            raise ConfigError(f"task.coarse_steps must be >= 0 and task.coarse_factor >= 1, got {steps} and {factor}")
        self.steps, self.factor, self.stride = int(steps), float(factor), stride
        self.active = False

    def fit_to_run(self, total_steps: int) -> None:
        """A run no longer than the coarse phase trains at full size throughout (with a warning): it would
        otherwise score and save a network that never saw full-size frames, which ``dwx predict`` then reads at
        full size. Short runs (``debug=fast``, a quick ``loop.steps``) stay runnable."""
        if 0 < total_steps <= self.steps:
            log.warning(
                "task.coarse_steps=%d covers the whole run (%d steps): this run trains at full size throughout; set "
                "task.coarse_steps below the step budget for a coarse phase (the default: 3000 of 7000)",
                self.steps,
                total_steps,
            )
            self.steps = 0

    def size(self, images: Tensor) -> tuple[int, int]:
        """(H, W) of (..., H, W) images divided by ``factor``, each rounded to the nearest multiple of the stride
        (ties up, at least one stride). The sides may round differently (96x320 -> 64x160): the coarse frames are
        then stretched, with intrinsics to match."""
        s = self.stride
        return tuple(s * max(1, math.floor(n / self.factor / s + 0.5)) for n in images.shape[-2:])

    def resize_batch(self, step: int, batch: Batch) -> Batch:
        """``batch`` as training step ``step`` sees it: in the coarse phase its frames downsampled to :meth:`size`
        (:func:`~tasks.depth_from_video.data.resize_frames`) and K following, else unchanged. Sets
        :attr:`active`."""
        self.active = step < self.steps
        if not self.active:
            return batch
        size = self.size(batch.target)
        K = resize_intrinsics(batch.K, tuple(batch.target.shape[-2:]), size)
        target, *sources = [resize_frames(x, size) for x in (batch.target, *batch.sources)]
        return batch._replace(target=target, sources=sources, K=K)

    def at_training_size(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) frames downsampled to :meth:`size` while training is in its coarse phase (evaluation then
        scores what the networks are being trained on), else unchanged."""
        return resize_frames(images, self.size(images)) if self.active else images
