"""The training objective of depth_from_video: view synthesis (SfMLearner, monodepth2) and its regularisers.

Each source frame is inverse-warped into the target view through the predicted depth and relative pose and compared
with the target photometrically (SSIM + L1), per output scale. The terms, weighted by ``task.losses``:

==================  ==========================================================================================
``photometric``     the reprojection error: per pixel the minimum (or mean) over the sources, optionally
                    auto-masked, averaged over the pixels and the scales
``smoothness``      edge-aware smoothness of mean-normalised disparity, divided by 2^s at scale s
``scale_anchor``    (mean log disparity - log init_disparity)^2: fixes the free common scale of depth and
                    translation, which the photometric term cannot see
==================  ==========================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from runner.errors import ConfigError
from runner.geometry.warping import resize_intrinsics, warp_frame
from runner.losses.photometric import automask, mean_reprojection, min_reprojection, photometric_error
from runner.losses.smoothness import edge_aware_smoothness
from runner.losses.weights import loss_weights
from tasks.depth_from_video.data import Sequence
from tasks.depth_from_video.models import disp_to_depth
from tasks.depth_from_video.snippets import Batch, DataParallel, FrameWindow

LOSS_TERMS = ("photometric", "smoothness", "scale_anchor")
DEFAULT_LOSSES = MappingProxyType({"photometric": 1.0, "smoothness": 1e-3, "scale_anchor": 0.01})


class TrainingViews(NamedTuple):
    """What the last training step compared at full resolution (scale 0), detached, for the visuals.

    Attributes:
        target: (b, 3, H, W) target frames (before colour jitter).
        warped: (b, 3, H, W) the first source warped into the target view.
        mask: (b, 1, H, W) the auto-mask (1: the pixel enters the loss), or None without auto-masking.
    """

    target: Tensor
    warped: Tensor
    mask: Tensor | None


class ViewSynthesisLoss:
    """The weighted loss terms of one batch, and the photometric error of held-out snippets.

    Args:
        losses: term -> weight >= 0 of :data:`LOSS_TERMS` (:func:`runner.losses.weights.loss_weights`; a term
            left out weighs 0).
        scales: output scales in the loss (0 = full resolution), a non-empty subset of 0..num_scales-1.
        num_scales: the depth network's output scales.
        scale_resolution: ``full``: scale s's disparity is upsampled to full resolution before warping (monodepth2).
            ``native``: scale s is compared at its own resolution, with area-downsampled frames and intrinsics
            (SfMLearner).
        ssim_alpha: SSIM share of the photometric error.
        min_reprojection: per-pixel minimum over the sources (monodepth2) instead of their mean (SfMLearner).
        automask: ignore pixels where not warping matches better than warping (static pixels).
        warp_min_depth_ratio: a target point a source camera sees more than 1 / ratio times nearer is invalid
            in that source (``warp_frame(min_depth_ratio=...)``), in [0, 1).
        depth_range: (min_depth, max_depth) the disparity sigmoid maps to [scene units].
        anchor_disparity: the disparity the ``scale_anchor`` term holds the batch's mean at (the depth network's
            ``init_disparity``); None is refused when that term is on.

    Raises:
        ConfigError: an argument out of its range.
    """

    def __init__(
        self,
        losses: Mapping[str, float],
        scales: list[int],
        num_scales: int,
        scale_resolution: str,
        ssim_alpha: float,
        min_reprojection: bool,
        automask: bool,
        warp_min_depth_ratio: float,
        depth_range: tuple[float, float],
        anchor_disparity: float | None,
    ):
        if scale_resolution not in ("full", "native"):
            raise ConfigError(f"task.scale_resolution must be full or native, got {scale_resolution!r}")
        if not scales or any(not 0 <= s < num_scales for s in scales):
            raise ConfigError(f"task.scales must be a non-empty subset of 0..{num_scales - 1}, got {list(scales)}")
        if not 0 <= warp_min_depth_ratio < 1:
            raise ConfigError(f"task.warp_min_depth_ratio must be in [0, 1), got {warp_min_depth_ratio}")
        self.weights = loss_weights(losses, LOSS_TERMS)
        if self.weights["scale_anchor"] > 0 and anchor_disparity is None:
            raise ConfigError(
                "task.losses.scale_anchor holds the depth scale at the start's disparity: set "
                "task.depth_net.init_disparity too, or task.losses.scale_anchor=0"
            )
        self.scales = sorted(int(s) for s in scales)
        self.scale_resolution = scale_resolution
        self.ssim_alpha = float(ssim_alpha)
        self.min_reprojection, self.automask = bool(min_reprojection), bool(automask)
        self.warp_min_depth_ratio = float(warp_min_depth_ratio)
        self.depth_range = depth_range
        self.anchor_disparity = anchor_disparity

    def __call__(
        self, batch: Batch, disparities: list[Tensor], poses: list[Tensor], ranks: DataParallel
    ) -> tuple[dict[str, Tensor], TrainingViews | None]:
        """The weighted terms of one batch, and its :class:`TrainingViews` (None when scale 0 is not in the loss).

        Args:
            batch: the step's frames as drawn (the networks read them colour-jittered), their intrinsics, and the
                step's generator (the auto-mask's tie-breaking noise is drawn from it for the global batch).
            disparities: [(b, 1, H / 2^s, W / 2^s)] the depth network's sigmoid disparity at every scale.
            poses: [(b, 4, 4)] ``src_from_dst`` per source.
            ranks: the run's processes: each takes its share of the noise, and the auto-masked mean is over the
                pixels the mask keeps in the global batch.
        Returns:
            ``photometric`` and ``smoothness`` (and ``scale_anchor`` when its weight is > 0), each a () tensor.
        """
        target, sources, K = batch.target, batch.sources, batch.K
        H, W = target.shape[-2:]
        alpha = self.ssim_alpha
        identity = [photometric_error(src, target, alpha) for src in sources] if self.automask else None
        photometric, smooth, views = 0.0, 0.0, None
        for s in self.scales:
            disp = disparities[s]
            scaled = F.interpolate(target, size=disp.shape[-2:], mode="area") if s else target  # at disp's size
            if self.scale_resolution == "native" and s:
                tgt, srcs = scaled, [F.interpolate(src, size=disp.shape[-2:], mode="area") for src in sources]
                K_s, disp_warp = resize_intrinsics(K, (H, W), tuple(disp.shape[-2:])), disp
                identity_s = None if identity is None else [photometric_error(x, tgt, alpha) for x in srcs]
            else:
                tgt, srcs, K_s, identity_s = target, sources, K, identity
                disp_warp = F.interpolate(disp, size=(H, W), mode="bilinear", align_corners=False) if s else disp
            warped, errors = self.reprojection_errors(
                tgt, srcs, disp_to_depth(disp_warp, *self.depth_range), poses, K_s
            )
            reprojection = self.reduce_sources(errors)
            if self.automask:
                # tie-breaking noise drawn for the global batch, this rank's share kept
                shape = (ranks.world_size * len(tgt), len(errors), *tgt.shape[-2:])
                noise = ranks.shard(torch.randn(shape, generator=batch.generator, dtype=target.dtype))
                mask = automask(errors, identity_s, noise=noise)
                # the mean over the pixels the mask keeps in the global batch: N ranks' shares average to it
                kept = ranks.sum_over_ranks(mask.sum()).clamp(min=1)
                photometric = photometric + ranks.world_size * (reprojection * mask).sum() / kept
            else:
                mask = None
                photometric = photometric + reprojection.mean()
            smooth = smooth + edge_aware_smoothness(disp, scaled) / 2**s
            if s == 0:
                views = TrainingViews(target.detach(), warped[0].detach(), None if mask is None else mask.detach())
        n = len(self.scales)
        w = self.weights
        terms = {"photometric": w["photometric"] * photometric / n, "smoothness": w["smoothness"] * smooth / n}
        if w["scale_anchor"] > 0:
            anchor = math.log(self.anchor_disparity)
            drift = [disparities[s].mean((1, 2, 3)).log().mean() - anchor for s in self.scales]
            terms["scale_anchor"] = w["scale_anchor"] * sum(d * d for d in drift) / n
        return terms, views

    def reprojection_errors(
        self, target: Tensor, sources: list[Tensor], depth: Tensor, poses: list[Tensor], K: Tensor
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Each source inverse-warped into the target view through the target's depth, and its per-pixel
        photometric (SSIM + L1) error against the target.

        Args:
            target: (B, 3, H, W).
            sources: [(B, 3, H, W)], one per source.
            depth: (B, 1, H, W) target depth [the poses' units].
            poses: [(B, 4, 4)] ``src_from_dst`` per source.
            K: (B, 3, 3) intrinsics of (H, W).
        Returns:
            The warped sources [(B, 3, H, W)] and their errors [(B, 1, H, W)].
        """
        warped, errors = [], []
        for src, src_from_dst in zip(sources, poses):
            w, _ = warp_frame(src, depth, src_from_dst, K, padding="border", min_depth_ratio=self.warp_min_depth_ratio)
            warped.append(w)
            errors.append(photometric_error(w, target, self.ssim_alpha))
        return warped, errors

    def reduce_sources(self, errors: list[Tensor]) -> Tensor:
        """[(B, 1, H, W)] per-source errors -> (B, 1, H, W): their per-pixel minimum (``min_reprojection``) or mean."""
        return min_reprojection(errors) if self.min_reprojection else mean_reprojection(errors)

    def snippet_errors(self, seq: Sequence, depth: Tensor, poses: list[Tensor], window: FrameWindow) -> Tensor:
        """(N,) photometric reprojection error of each of the N snippets of a sequence (``window.targets``),
        scored as the loss scores scale 0: SSIM + L1, minimum (or mean) over the sources, mean over the pixels;
        no augmentation, auto-mask or smoothness. 16 snippets at a time.

        Args:
            seq: frames (T, 3, H, W) and K.
            depth: (T, H, W) depth of every frame [the poses' units].
            poses: one (N, 4, 4) ``src_from_dst`` per source offset of ``window``.
        """
        targets = torch.tensor(window.targets(seq), device=seq.frames.device)
        out = []
        for index in torch.split(torch.arange(len(targets), device=targets.device), 16):
            t = targets[index]
            sources = [seq.frames[t + o] for o in window.sources]
            K = seq.K.expand(len(t), 3, 3)
            _, errors = self.reprojection_errors(seq.frames[t], sources, depth[t, None], [p[index] for p in poses], K)
            out.append(self.reduce_sources(errors).mean((1, 2, 3)))
        return torch.cat(out)
