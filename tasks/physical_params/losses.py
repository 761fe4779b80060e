"""Losses of ``physical_params``: pixels compared over an image pyramid, tracks compared point by point."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def pyramid_mse(pred: Tensor, target: Tensor, weights: Sequence[float]) -> Tensor:
    """Weighted sum of the mean squared pixel differences at successively halved resolutions.

    Level l compares the frames box-filtered over 2^l x 2^l pixels. The coarse levels let a splat that does
    not yet overlap its target still feel it (a wider basin of attraction, as coarse-to-fine image alignment
    does); the fine level sets the precision.

    Args:
        pred: (T, H, W, C) rendered frames.
        target: (T, H, W, C) observed frames.
        weights: one weight ≥ 0 per level, finest first; H and W must be divisible by 2^(levels - 1).

    Returns:
        () the loss.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pyramid_mse: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    levels = len(weights)
    if levels == 0 or pred.shape[1] % 2 ** (levels - 1) or pred.shape[2] % 2 ** (levels - 1):
        raise ValueError(
            f"pyramid_mse: {levels} levels need frames divisible by {2 ** max(levels - 1, 0)}, "
            f"got {tuple(pred.shape[1:3])}"
        )
    a, b = pred.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2)
    total = pred.new_zeros(())
    for level, weight in enumerate(weights):
        if level:
            a, b = torch.nn.functional.avg_pool2d(a, 2), torch.nn.functional.avg_pool2d(b, 2)
        if weight:
            total = total + weight * (a - b).square().mean()
    return total


def track_mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared distance between predicted and observed tracks (T, P, D), in their unit squared."""
    if pred.shape != target.shape:
        raise ValueError(f"track_mse: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    return (pred - target).square().sum(-1).mean()
