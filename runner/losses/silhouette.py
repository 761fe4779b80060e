"""Silhouette losses between soft coverage maps (pure functions; weights live in the YAML)."""

from __future__ import annotations

from torch import Tensor


def _check(alpha_pred: Tensor, alpha_gt: Tensor) -> None:
    if alpha_pred.dim() != 3 or alpha_pred.shape != alpha_gt.shape:
        raise ValueError(f"alpha_pred and alpha_gt must both be (B, H, W), got {tuple(alpha_pred.shape)} "
                         f"and {tuple(alpha_gt.shape)}")


def soft_iou(alpha_pred: Tensor, alpha_gt: Tensor, eps: float = 1e-6) -> Tensor:
    """One minus the soft intersection over union, averaged over the batch (SoftRas, Liu et al. ICCV 2019).

    Per image, ``IoU = sum(p g) / (sum(p + g - p g) + eps)`` over the pixels; the loss is
    ``1 - mean_b IoU_b``, in [0, 1], 0 for identical binary masks.

    Args:
        alpha_pred: (B, H, W) predicted coverage in [0, 1].
        alpha_gt: (B, H, W) target coverage in [0, 1].
        eps: keeps the ratio finite when both masks are empty.
    Returns:
        () scalar loss.
    """
    _check(alpha_pred, alpha_gt)
    inter = (alpha_pred * alpha_gt).sum((1, 2))
    union = (alpha_pred + alpha_gt - alpha_pred * alpha_gt).sum((1, 2)) + eps
    return 1 - (inter / union).mean()


def silhouette_l2(alpha_pred: Tensor, alpha_gt: Tensor) -> Tensor:
    """Mean squared difference of (B, H, W) coverage maps; () scalar (PyTorch3D's camera-position tutorial)."""
    _check(alpha_pred, alpha_gt)
    return ((alpha_pred - alpha_gt) ** 2).mean()
