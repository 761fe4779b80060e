"""Edge-aware smoothness of disparity (Godard et al., "Unsupervised Monocular Depth Estimation with
Left-Right Consistency", CVPR 2017), on mean-normalised disparity as in monodepth2 (ICCV 2019)."""

from __future__ import annotations

from torch import Tensor


def edge_aware_smoothness(disp: Tensor, image: Tensor) -> Tensor:
    """``mean(|dx d| exp(-|dx I|)) + mean(|dy d| exp(-|dy I|))`` with ``d = disp / mean(disp)`` per image.

    Disparity gradients are penalised where the image is flat and tolerated across image edges, which
    are where depth edges may be. Dividing by each image's mean disparity makes the term invariant to
    the global scale (which monocular training cannot observe), so shrinking the disparity cannot
    lower it (Wang et al., CVPR 2018). Image gradients are averaged over channels; differences are
    between neighbouring pixels (forward differences).

    Args:
        disp: (B, 1, H, W) disparity, > 0.
        image: (B, C, H, W) the image at the same resolution, in [0, 1].
    Returns:
        () scalar, >= 0; 0 for a constant disparity.
    """
    if disp.dim() != 4 or disp.shape[1] != 1:
        raise ValueError(f"disp must be (B, 1, H, W), got {tuple(disp.shape)}")
    if image.dim() != 4 or image.shape[0] != disp.shape[0] or image.shape[-2:] != disp.shape[-2:]:
        raise ValueError(f"image must be (B, C, H, W) with the B, H, W of disp {tuple(disp.shape)}, "
                         f"got {tuple(image.shape)}")
    d = disp / disp.mean((2, 3), keepdim=True).clamp(min=1e-7)
    dx = (d[..., :, :-1] - d[..., :, 1:]).abs()
    dy = (d[..., :-1, :] - d[..., 1:, :]).abs()
    ix = (image[..., :, :-1] - image[..., :, 1:]).abs().mean(1, keepdim=True)
    iy = (image[..., :-1, :] - image[..., 1:, :]).abs().mean(1, keepdim=True)
    return (dx * (-ix).exp()).mean() + (dy * (-iy).exp()).mean()
