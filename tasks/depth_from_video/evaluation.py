"""How depth_from_video scores its predictions: the Eigen depth metrics under the evaluation protocol (caps, Garg crop,
per-image scaling) beside the constant-depth baseline, the saturation of each output scale, and the trajectory of
chained relative poses for the ATE. The networks are run by the task; everything here takes their outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from runner.errors import ConfigError, InputError
from tasks.depth_from_video.data import Sequence
from tasks.depth_from_video.metrics import (
    DepthCaps,
    align_scale,
    baseline_constant_depth,
    compute_depth_metrics,
    garg_crop_mask,
    saturated_fraction,
)
from tasks.depth_from_video.models import disp_to_depth

log = logging.getLogger("dwx")

SCALINGS = ("median", "gt", "none")


class EvalProtocol:
    """Which ground-truth pixels are scored and how a monocular prediction is scaled to them.

    Args:
        scaling: ``median`` (per image), ``gt`` (per-image ground-truth scale), or ``none``.
        min_depth, max_depth: ground-truth caps [scene units]; scaled predictions are clamped into them.
        garg_crop: score only inside the Garg crop (KITTI).

    Raises:
        ConfigError: an unknown scaling, or caps that are not 0 < min_depth < max_depth.
    """

    def __init__(self, scaling: str, min_depth: float, max_depth: float, garg_crop: bool):
        if scaling not in SCALINGS:
            raise ConfigError(f"task.eval_scaling must be median, gt or none, got {scaling!r}")
        if not 0 < min_depth < max_depth:
            raise ConfigError(f"need 0 < task.eval_min_depth < task.eval_max_depth, got {min_depth}, {max_depth}")
        self.scaling, self.caps, self.garg_crop = scaling, DepthCaps(float(min_depth), float(max_depth)), garg_crop

    def scaled_to_truth(self, depth: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
        """(H, W) predicted depth -> scaled to (H, W) ``gt`` (``scaling``) and clamped to the caps, and the (H, W)
        mask of the scored pixels: inside the caps (and the Garg crop); none when fewer than 10, the frame is then
        not scored and the depth comes back unchanged."""
        mask = self.caps.mask(gt)
        if self.garg_crop:
            mask = mask & garg_crop_mask(*gt.shape, device=gt.device)
        if mask.sum() < 10:
            return depth, torch.zeros_like(mask)
        return self.caps.clamp(align_scale(depth, gt, mask, method=self.scaling)), mask

    def scored_frames(self, predictions: list[tuple[Sequence, Tensor]]) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """(scaled prediction, gt, mask), each (H, W), for every frame with ground truth and at least 10 scored
        pixels (:meth:`scaled_to_truth`).

        Args:
            predictions: each sequence with its predicted depth (T, H, W) [network units].
        """
        for seq, pred in predictions:
            if seq.depth is None:
                continue
            for t in range(len(seq)):
                scaled, mask = self.scaled_to_truth(pred[t], seq.depth[t])
                if mask.any():
                    yield scaled, seq.depth[t], mask

    def depth_metrics(self, predictions: list[tuple[Sequence, Tensor]]) -> dict[str, float]:
        """The per-image Eigen metrics of :meth:`scored_frames` averaged over the frames, and ``baseline_abs_rel``
        and ``baseline_a1``: those of the best constant depth per image.

        Raises:
            InputError: no frame has ground-truth depth to score.
        """
        per_image, baseline = [], []
        for scaled, gt, mask in self.scored_frames(predictions):
            per_image.append(compute_depth_metrics(scaled, gt, mask))
            baseline.append(baseline_constant_depth(gt, mask))
        if not per_image:
            raise InputError(
                "no test frame has ground-truth depth: evaluation needs depth (data.depth_path, or a source with depth)"
            )
        metrics = {k: float(np.mean([m[k] for m in per_image])) for k in per_image[0]}
        metrics["baseline_abs_rel"] = float(np.mean([m["abs_rel"] for m in baseline]))
        metrics["baseline_a1"] = float(np.mean([m["a1"] for m in baseline]))
        return metrics


    def median_ratio(self, predictions: list[tuple[Sequence, Tensor]]) -> float:
        """The median over the scored frames of median(prediction) / median(truth) on the scored pixels: how far
        the predictions' scale is from the truth's (1 = right; meaningful with ``scaling="none"``)."""
        ratios = [float(p[m].median() / g[m].median()) for p, g, m in self.scored_frames(predictions)]
        return float(np.median(ratios))


def saturation_metrics(
    disparities: list[list[Tensor]], scales: list[int], min_depth: float, max_depth: float
) -> dict[str, float]:
    """``saturated``: the fraction of the test depths at ``min_depth`` / ``max_depth`` at scale 0
    (:func:`~tasks.depth_from_video.metrics.saturated_fraction`), and ``saturated_s<s>`` for every other scale in
    the loss, with a warning for each scale over one half: that output has collapsed to a constant. A coarse output
    can collapse on its own while scale 0 still trains; its loss term then adds a constant and no gradient.

    Args:
        disparities: for each test sequence, every scale's disparity (T, 1, h / 2^s, w / 2^s).
        scales: the scales in the loss.
    """
    by_scale = {
        s: saturated_fraction(
            disp_to_depth(torch.cat([d[s].flatten() for d in disparities]), min_depth, max_depth), min_depth, max_depth
        )
        for s in sorted({0, *scales})
    }
    for s, fraction in by_scale.items():
        if fraction > 0.5:
            log.warning(
                "%.0f %% of the test depths at scale %d sit at task.min_depth / max_depth: that output has collapsed "
                "to a constant (its sigmoid saturates and passes no gradient%s); if it persists at the next "
                "evaluation, start again with another seed",
                100 * fraction,
                s,
                ", abs_rel = baseline_abs_rel" if s == 0 else "; its loss term no longer trains",
            )
    return {"saturated": by_scale[0], **{f"saturated_s{s}": f for s, f in by_scale.items() if s}}


def chained_trajectory(motions: Tensor) -> Tensor:
    """(T-1, 4, 4) motions, camera t+1 from camera t -> (T, 4, 4) cam_t_from_cam_0, the first the identity."""
    poses = [torch.eye(4, device=motions.device)]
    for M in motions:
        poses.append(M @ poses[-1])
    return torch.stack(poses)
