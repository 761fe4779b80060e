"""Unsupervised monocular depth and ego-motion from video (SfMLearner, Zhou et al. CVPR 2017;
monodepth2, Godard et al. ICCV 2019).

A DepthNet predicts the disparity of a target frame, a PoseNet the motion to each source frame of
the window; the sources are inverse-warped into the target view and compared photometrically. No
depth label is used in training; ground truth only enters :meth:`DepthFromVideo.evaluate`. Without it
(the user's own video) the main metric is ``val_photometric``, the same photometric reprojection error
on the held-out test snippets.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from runner.errors import ConfigError, InputError
from runner.geometry.warping import resize_intrinsics, warp_frame
from runner.logging import Logger
from runner.losses.photometric import automask, mean_reprojection, min_reprojection, photometric_error
from runner.losses.smoothness import edge_aware_smoothness
from runner.render.base import PRIMITIVES
from runner.task import Task
from runner.visuals import Panel, grey, mapped, panel_row, write_video
from tasks.depth_from_video.artifacts import depth_video, inverse_depth_range, prediction_panel, write_depth_maps
from tasks.depth_from_video.data import FramesVideo, Sequence, Splits, resize_frames
from tasks.depth_from_video.metrics import (
    absolute_trajectory_error,
    align_scale,
    baseline_constant_depth,
    compute_depth_metrics,
    garg_crop_mask,
    saturated_fraction,
)
from tasks.depth_from_video.models import DepthNet, PoseNet, disp_to_depth, pose_to_matrix

log = logging.getLogger("dwx")

VIDEO_FPS = 10  # frames per second of test_depth.mp4


class DepthFromVideo(Task):
    """Train DepthNet + PoseNet by view synthesis on a video data source; evaluate depth and poses.

    Args:
        data: a source with ``load() -> Splits`` (see :mod:`tasks.depth_from_video.data`).
        depth_net: the disparity network (multi-scale outputs, sigmoid).
        pose_net: the relative-pose network (axis-angle + translation).
        frame_window: frame offsets of the snippet, 0 the target (monodepth2: [-1, 0, 1]).
        batch_size: snippets per step: the global batch of a data-parallel run (``torchrun
            --nproc_per_node=N``), where each of the N processes trains on batch_size / N of them and the
            loop averages the gradients; it must then be a multiple of N.
        min_depth, max_depth: the disparity sigmoid maps to depth in [min_depth, max_depth] [scene units].
        scales: output scales that enter the loss (0 = full resolution).
        scale_resolution: where the loss of scale s is computed. ``full``: its disparity is upsampled to
            full resolution before warping (monodepth2's full-resolution multi-scale). ``native``: at the
            scale's own resolution, with area-downsampled frames and intrinsics (SfMLearner, monodepth):
            an image motion of m pixels is m / 2^s pixels there, a wider basin for the coarse outputs at
            a fraction of the full-resolution cost.
        photometric_weight: weight of the photometric (SSIM + L1) reprojection term.
        ssim_alpha: SSIM share of the photometric error (0.85).
        smoothness_weight: weight of the edge-aware smoothness on mean-normalised disparity (1e-3).
        min_reprojection: per-pixel minimum over the sources (monodepth2) instead of their mean (SfMLearner).
        automask: ignore pixels where not warping matches better than warping (static pixels).
        color_jitter: max brightness/contrast/saturation change of the network inputs (0 = off).
        flip: probability of a horizontal flip of a snippet.
        eval_scaling: ``median`` (per image), ``gt`` (per-image ground-truth scale), or ``none``.
        eval_min_depth, eval_max_depth: ground-truth caps for evaluation [scene units].
        garg_crop: evaluate only inside the Garg crop (KITTI).
        translation_scale: factor on PoseNet's translation. PoseNet scales its output by 0.01 so that
            training starts near the identity. Monocular training fixes depth only up to a scale, and
            that scale follows the start: with 0.5 m per frame and a small translation the consistent
            depths sit near ``min_depth``, where the sigmoid saturates. Choose it together with
            ``DepthNet(init_disparity=...)``: the streets default pairs 100 with 0.05; with the ~0.5
            start, 10 kept the near ground off ``min_depth`` and 100 made the translation run away
            (|t| 5-70, abs_rel at the baseline).
        warp_min_depth_ratio: a target point that a source camera would see more than 1 / ratio times
            nearer is invalid in that source and passes no gradient (``warp_frame(min_depth_ratio=...)``):
            a forward source whose translation nearly reaches a (wrongly near) depth otherwise magnifies the
            point's sample position and gradient without bound. 0 keeps only the 1e-3 floor.
        coarse_steps: the first ``coarse_steps`` steps train on frames downsampled by ``coarse_factor``
            (intrinsics rescaled to match), the rest at full resolution: progressive resizing (as fast.ai's
            and EfficientNetV2's progressive learning), for the coarse depth layout at a fraction of the cost
            of a full-resolution step (the networks are fully convolutional). Evaluation in that phase
            scores the networks at the coarse size. 0 = off.
        coarse_factor: downsampling factor of the coarse phase, >= 1; each side of the coarse frames is
            the full side / factor rounded to the nearest multiple of the network's stride (64x192 and
            factor 2: 32x96; 96x320: 64x160).
        scale_anchor_weight: weight of a term that holds the batch's mean log disparity (per image, the log
            of its mean sigmoid disparity) at ``log(depth_net.init_disparity)``. The photometric loss cannot
            tell depth and translation scaled together apart, so that common scale is a free gauge; Adam's
            per-parameter steps can drift along it until the sigmoid saturates at ``min_depth`` or
            ``max_depth`` and passes no gradient. The term fixes the gauge and leaves every depth ratio and
            the photometric optimum as they were. 0 = off.
        seed: batch and augmentation seed.

    Attributes:
        metric: ``abs_rel`` when the test data holds ground-truth depth, else ``val_photometric``
            (:meth:`setup` decides from the loaded data); both ``min``.
        has_ground_truth: a test sequence holds depth (set by :meth:`setup`).
    """

    metric = "abs_rel"
    mode = "min"
    renders = PRIMITIVES  # the embedded streets, through the data source (renderer=raycast)
    data_parallel = True  # loss() draws the global batch and keeps its share (runner.distributed)

    def __init__(
        self,
        data,
        depth_net: DepthNet,
        pose_net: PoseNet,
        frame_window: list[int] = (-2, 0, 2),
        batch_size: int = 8,
        min_depth: float = 0.1,
        max_depth: float = 100.0,
        scales: list[int] = (0, 3),
        scale_resolution: str = "native",
        photometric_weight: float = 1.0,
        ssim_alpha: float = 0.85,
        smoothness_weight: float = 1e-3,
        min_reprojection: bool = True,
        automask: bool = False,
        color_jitter: float = 0.2,
        flip: float = 0.5,
        eval_scaling: str = "median",
        eval_min_depth: float = 1e-3,
        eval_max_depth: float = 80.0,
        garg_crop: bool = False,
        translation_scale: float = 100.0,
        warp_min_depth_ratio: float = 0.25,
        scale_anchor_weight: float = 0.01,
        coarse_steps: int = 3000,
        coarse_factor: float = 2.0,
        seed: int = 0,
    ):
        super().__init__(seed)
        window = [int(o) for o in frame_window]
        if 0 not in window or len(window) < 2 or len(set(window)) != len(window):
            raise ConfigError(f"task.frame_window must hold 0 (the target) and at least one source, got {window}")
        if batch_size < 1:
            raise ConfigError(f"task.batch_size must be >= 1, got {batch_size}")
        if not 0 < min_depth < max_depth:
            raise ConfigError(f"need 0 < task.min_depth < task.max_depth, got {min_depth}, {max_depth}")
        if eval_scaling not in ("median", "gt", "none"):
            raise ConfigError(f"task.eval_scaling must be median, gt or none, got {eval_scaling!r}")
        if scale_resolution not in ("full", "native"):
            raise ConfigError(f"task.scale_resolution must be full or native, got {scale_resolution!r}")
        bad_scales = [s for s in scales if not 0 <= s < depth_net.num_scales]
        if bad_scales or not scales:
            raise ConfigError(
                f"task.scales must be a non-empty subset of 0..{depth_net.num_scales - 1}, got {list(scales)}"
            )
        self.data = data
        self.depth_net, self.pose_net = depth_net, pose_net
        self.sources = [o for o in window if o != 0]
        self.window = window
        self.batch_size = int(batch_size)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.scales = sorted(int(s) for s in scales)
        self.scale_resolution = scale_resolution
        self.photometric_weight, self.ssim_alpha = float(photometric_weight), float(ssim_alpha)
        self.smoothness_weight = float(smoothness_weight)
        self.use_min_reprojection, self.use_automask = bool(min_reprojection), bool(automask)
        self.color_jitter, self.flip = float(color_jitter), float(flip)
        self.eval_scaling = eval_scaling
        self.eval_min_depth, self.eval_max_depth, self.garg_crop = (
            float(eval_min_depth),
            float(eval_max_depth),
            garg_crop,
        )
        if translation_scale <= 0:
            raise ConfigError(f"task.translation_scale must be > 0, got {translation_scale}")
        self.translation_scale = float(translation_scale)
        if not 0 <= warp_min_depth_ratio < 1:
            raise ConfigError(f"task.warp_min_depth_ratio must be in [0, 1), got {warp_min_depth_ratio}")
        self.warp_min_depth_ratio = float(warp_min_depth_ratio)
        if scale_anchor_weight < 0:
            raise ConfigError(f"task.scale_anchor_weight must be >= 0, got {scale_anchor_weight}")
        if scale_anchor_weight > 0 and depth_net.init_disparity is None:
            raise ConfigError("task.scale_anchor_weight holds the depth scale at the start's disparity: set "
                              "task.depth_net.init_disparity too, or task.scale_anchor_weight=0")
        self.scale_anchor_weight = float(scale_anchor_weight)
        if coarse_steps < 0 or not coarse_factor >= 1:
            raise ConfigError(f"task.coarse_steps must be >= 0 and task.coarse_factor >= 1, got {coarse_steps} and "
                              f"{coarse_factor}")
        self.coarse_steps, self.coarse_factor = int(coarse_steps), float(coarse_factor)
        self._coarse_now = False  # the last training batch was coarse: evaluation then reads frames at that size
        self.splits: Splits | None = None
        self.snippets: Tensor | None = None  # (N, 2) int64: (sequence index, target frame index)
        self.has_ground_truth = True
        self._last: dict[str, Tensor | None] = {}  # the last step's scale-0 views, for visuals

    # ------------------------------------------------------------------ data
    def setup(self, device):
        super().setup(device)
        splits = self.data.load()
        for seq in splits.train + splits.test:
            self.depth_net.check_image_size(*seq.image_size)
        sizes = {seq.image_size for seq in splits.train}
        if len(sizes) > 1:
            raise InputError(f"training sequences differ in image size: {sorted(sizes)}")
        snippets = [(i, t) for i, seq in enumerate(splits.train) for t in self._snippet_targets(seq)]
        if not snippets:
            longest = max(len(s) for s in splits.train)
            raise InputError(
                f"the frame window {self.window} needs sequences of at least {self._window_length} frames; the "
                f"longest training sequence has {longest}"
            )
        self._choose_metric(splits.test)
        self.snippets = torch.tensor(snippets, dtype=torch.int64)
        self.splits = Splits([_to(s, device) for s in splits.train], [_to(s, device) for s in splits.test])

    @property
    def _window_length(self) -> int:
        """Frames a snippet spans."""
        return max(self.window) - min(self.window) + 1

    def _snippet_targets(self, seq: Sequence) -> range:
        """The target frame indices of ``seq`` whose whole frame window lies inside it."""
        return range(-min(self.window), len(seq) - max(self.window))

    def _choose_metric(self, test: list[Sequence]) -> None:
        """``abs_rel`` when a test sequence holds ground-truth depth, else ``val_photometric``, which needs
        one test snippet (a whole frame window): checked here, before any training."""
        self.has_ground_truth = any(seq.depth is not None for seq in test)
        if self.has_ground_truth:
            self.metric = "abs_rel"
            return
        if not any(self._snippet_targets(seq) for seq in test):
            raise InputError(
                f"without ground-truth depth ({self._no_ground_truth_reason()}) a run is scored by the photometric "
                f"error on held-out snippets, but the frame window {self.window} needs {self._window_length} test "
                f"frames and the longest test sequence has {max(len(s) for s in test)}: raise data.test_fraction "
                "or give more frames"
            )
        self.metric = "val_photometric"
        log.info("no ground-truth depth (%s): the main metric is val_photometric, the photometric reprojection "
                 "error on the held-out test snippets; no abs_rel", self._no_ground_truth_reason())

    def _no_ground_truth_reason(self) -> str:
        """Why the test data holds no depth, in the user's terms."""
        if isinstance(self.data, FramesVideo):
            return "data.depth_path not set"
        return "the test sequences hold none"

    def steps_per_epoch(self) -> int:
        return max(1, len(self.snippets) // self.batch_size)

    def plan(self, total_steps: int) -> None:
        """A run no longer than the coarse phase trains at full size throughout (with a warning): it would
        otherwise score and save a network that never saw full-size frames, which ``dwx predict`` then
        reads at full size. Short runs (``debug=fast``, a quick ``loop.steps``) stay runnable."""
        if 0 < total_steps <= self.coarse_steps:
            log.warning("task.coarse_steps=%d covers the whole run (%d steps): this run trains at full size "
                        "throughout; set task.coarse_steps below the step budget for a coarse phase (the default: "
                        "3000 of 7000)", self.coarse_steps, total_steps)
            self.coarse_steps = 0

    def param_groups(self):
        return {"depth": list(self.depth_net.parameters()), "pose": list(self.pose_net.parameters())}

    def _batch(self, step: int) -> tuple[Tensor, list[Tensor], Tensor, Tensor, torch.Generator]:
        """Target (b,3,H,W), sources [(b,3,H,W)] in window order, K (b,3,3), flip mask (b,) for one step.

        In the first ``coarse_steps`` steps the frames are downsampled to :meth:`_coarse_size`
        (:func:`~tasks.depth_from_video.data.resize_frames`) and K follows; the step also sets
        ``_coarse_now``, which evaluation reads (:meth:`_at_training_size`).

        The step's generator draws the global batch: ``batch_size`` snippets and their flips (and in
        :meth:`loss` their colour jitter and auto-mask noise), the same on every rank; each rank keeps its
        share of b = batch_size / world_size (:meth:`~runner.task.Task.shard`), so N processes train on
        exactly the snippets and augmentations one process sees (dwx's stand-in for DistributedSampler).
        """
        g = self.step_generator(step)
        pick = self.shard(self.snippets[torch.randint(len(self.snippets), (self.batch_size,), generator=g)])
        flip = self.shard(torch.rand(self.batch_size, generator=g) < self.flip)
        seqs = [self.splits.train[i] for i in pick[:, 0].tolist()]
        t = pick[:, 1].tolist()
        target = torch.stack([s.frames[ti] for s, ti in zip(seqs, t)])
        sources = [torch.stack([s.frames[ti + o] for s, ti in zip(seqs, t)]) for o in self.sources]
        K = torch.stack([s.K for s in seqs])
        if flip.any():
            f = flip.to(self.device)
            W = target.shape[-1]
            target = torch.where(f[:, None, None, None], target.flip(-1), target)
            sources = [torch.where(f[:, None, None, None], s.flip(-1), s) for s in sources]
            K = K.clone()
            K[:, 0, 2] = torch.where(f, W - 1 - K[:, 0, 2], K[:, 0, 2])
        self._coarse_now = step < self.coarse_steps
        if self._coarse_now:
            size = self._coarse_size(target)
            K = resize_intrinsics(K, tuple(target.shape[-2:]), size)
            target, *sources = [resize_frames(x, size) for x in (target, *sources)]
        return target, sources, K, flip, g

    def _coarse_size(self, images: Tensor) -> tuple[int, int]:
        """(H, W) of (..., H, W) images divided by ``coarse_factor``, each rounded to the nearest multiple of
        the network's stride (ties up, at least one stride). The sides may round differently (96x320 ->
        64x160): the coarse frames are then stretched, with intrinsics to match."""
        s = self.depth_net.stride
        return tuple(s * max(1, math.floor(n / self.coarse_factor / s + 0.5)) for n in images.shape[-2:])

    def _at_training_size(self, images: Tensor) -> Tensor:
        """(B,3,H,W) frames downsampled by ``coarse_factor`` while training is in its coarse phase
        (evaluation then scores what the networks are being trained on), else unchanged."""
        return resize_frames(images, self._coarse_size(images)) if self._coarse_now else images

    def _jitter(self, images: list[Tensor], g: torch.Generator) -> list[Tensor]:
        """The same random brightness, contrast and saturation change for every frame of a snippet.

        The factors are drawn for the global batch and sharded, like the snippets.
        """
        if self.color_jitter <= 0:
            return images
        j = self.color_jitter
        draw = torch.rand(3, self.batch_size, 1, 1, 1, generator=g)
        factors = (1 + (draw[:, self.shard(torch.arange(self.batch_size))] * 2 - 1) * j).to(images[0].device)
        out = []
        for img in images:
            gray = img.mean(1, keepdim=True)
            img = img * factors[0]
            img = (img - img.mean((1, 2, 3), keepdim=True)) * factors[1] + img.mean((1, 2, 3), keepdim=True)
            img = (img - gray) * factors[2] + gray
            out.append(img.clamp(0, 1))
        return out

    # ------------------------------------------------------------------ model
    def predict_disparities(self, images: Tensor) -> list[Tensor]:
        """(B,3,H,W) -> [(B,1,H/2^s,W/2^s)] sigmoid disparities for every scale."""
        return self.depth_net(images)

    def full_size_disparity(self, images: Tensor) -> Tensor:
        """(B,3,H,W) -> (B,1,H,W) scale-0 disparity. In the coarse phase the network reads the frames at the
        coarse size and its disparity is upsampled (bilinear) to (H, W)."""
        return _upsampled(self.predict_disparities(self._at_training_size(images))[0], images.shape[-2:])

    def predict_depth(self, images: Tensor) -> Tensor:
        """(B,3,H,W) -> (B,H,W) depth at full resolution [network scale units] (see :meth:`full_size_disparity`)."""
        return disp_to_depth(self.full_size_disparity(images), self.min_depth, self.max_depth)[:, 0]

    def relative_poses(self, target: Tensor, sources: list[Tensor], offsets: list[int]) -> list[Tensor]:
        """One (B,4,4) ``src_from_dst`` per source: the transform taking target-camera points into that
        source camera.

        Each pair is fed in temporal order and the result inverted for past sources (monodepth2). All
        pairs go through PoseNet as one batch (it has no batch statistics, so this equals one call per
        pair; at 64x192, batch 8, two pairs: 6.7-7.2 ms forward + backward against 8.3 ms).
        """
        pairs = [torch.cat([src, target] if o < 0 else [target, src], 1) for src, o in zip(sources, offsets)]
        motions = self.pose_net(torch.cat(pairs)).split(target.shape[0])  # (B, 6) each: second_from_first
        return [pose_to_matrix(m[:, :3], self.translation_scale * m[:, 3:], invert=o < 0)
                for m, o in zip(motions, offsets)]

    # ------------------------------------------------------------------ loss
    def loss(self, step: int) -> dict[str, Tensor]:
        target, sources, K, _, g = self._batch(step)
        inputs = self._jitter([target, *sources], g)
        disps = self.predict_disparities(inputs[0])
        poses = self.relative_poses(inputs[0], inputs[1:], self.sources)
        H, W = target.shape[-2:]
        identity = [photometric_error(src, target, self.ssim_alpha) for src in sources] if self.use_automask else None
        photometric, smooth = 0.0, 0.0
        for s in self.scales:
            disp = disps[s]
            scaled = F.interpolate(target, size=disp.shape[-2:], mode="area") if s else target  # at disp's size
            if self.scale_resolution == "native" and s:
                tgt, srcs = scaled, [F.interpolate(src, size=disp.shape[-2:], mode="area") for src in sources]
                K_s, disp_warp = resize_intrinsics(K, (H, W), tuple(disp.shape[-2:])), disp
                identity_s = None if identity is None else [photometric_error(x, tgt, self.ssim_alpha) for x in srcs]
            else:
                tgt, srcs, K_s, identity_s = target, sources, K, identity
                disp_warp = F.interpolate(disp, size=(H, W), mode="bilinear", align_corners=False) if s else disp
            depth = disp_to_depth(disp_warp, self.min_depth, self.max_depth)
            warped, errors = self.reprojection_errors(tgt, srcs, depth, poses, K_s)
            reproj = self._reduce_sources(errors)
            if self.use_automask:
                # tie-breaking noise drawn for the global batch, this rank's share kept
                shape = (self.batch_size, len(errors), *tgt.shape[-2:])
                noise = self.shard(torch.randn(shape, generator=g, dtype=target.dtype))
                mask = automask(errors, identity_s, noise=noise)
                # the mean over the pixels the mask keeps in the global batch: N ranks' shares average to it
                kept = self.sum_over_ranks(mask.sum()).clamp(min=1)
                photometric = photometric + self.world_size * (reproj * mask).sum() / kept
            else:
                mask = None
                photometric = photometric + reproj.mean()
            smooth = smooth + edge_aware_smoothness(disp, scaled) / 2**s
            if s == 0:
                self._last = {
                    "target": target.detach(),
                    "warped": warped[0].detach(),
                    "mask": None if mask is None else mask.detach(),
                }
        n = len(self.scales)
        terms = {
            "photometric": self.photometric_weight * photometric / n,
            "smoothness": self.smoothness_weight * smooth / n,
        }
        if self.scale_anchor_weight > 0:
            anchor = math.log(self.depth_net.init_disparity)
            drift = [disps[s].mean((1, 2, 3)).log().mean() - anchor for s in self.scales]
            terms["scale_anchor"] = self.scale_anchor_weight * sum(d * d for d in drift) / n
        return terms

    def reprojection_errors(
        self, target: Tensor, sources: list[Tensor], depth: Tensor, poses: list[Tensor], K: Tensor
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Each source inverse-warped into the target view through the target's depth, and its per-pixel
        photometric (SSIM + L1) error against the target.

        Args:
            target: (B, 3, H, W).
            sources: [(B, 3, H, W)], one per source.
            depth: (B, 1, H, W) target depth [the poses' units].
            poses: [(B, 4, 4)] ``src_from_dst`` per source (:meth:`relative_poses`).
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

    def _reduce_sources(self, errors: list[Tensor]) -> Tensor:
        """[(B, 1, H, W)] per-source errors -> (B, 1, H, W): their per-pixel minimum (``min_reprojection``)
        or mean."""
        return min_reprojection(errors) if self.use_min_reprojection else mean_reprojection(errors)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def _sequence_disparities(self, seq: Sequence) -> list[Tensor]:
        """Every scale's disparity of a sequence, (T, 1, h / 2^s, w / 2^s), with the network in eval mode
        and the frames at the training size (:meth:`_at_training_size`), 16 frames at a time."""
        self.depth_net.eval()
        chunks = [self.predict_disparities(self._at_training_size(c)) for c in torch.split(seq.frames, 16)]
        self.depth_net.train()
        return [torch.cat(scale) for scale in zip(*chunks)]

    def _depth_of(self, seq: Sequence, disparities: list[Tensor]) -> Tensor:
        """(T, H, W) full-size depth [network units] from a sequence's scale-0 disparity."""
        disp = _upsampled(disparities[0], seq.frames.shape[-2:])
        return disp_to_depth(disp, self.min_depth, self.max_depth)[:, 0]

    def predictions(self, sequences: list[Sequence] | None = None) -> list[tuple[Sequence, Tensor]]:
        """Each sequence (default: the test split) with its predicted depth (T, H, W) [network units]."""
        return [(seq, self._depth_of(seq, self._sequence_disparities(seq)))
                for seq in (self.splits.test if sequences is None else sequences)]

    def saturation_by_scale(self, disparities: list[list[Tensor]]) -> dict[int, float]:
        """Scale 0 and every scale in the loss -> the fraction of its test depths at ``min_depth`` /
        ``max_depth`` (:func:`saturated_fraction`), from each test sequence's disparities
        (:meth:`_sequence_disparities`). A coarse output can collapse on its own while scale 0 still
        trains; its loss term then adds a constant and no gradient."""
        return {
            s: saturated_fraction(
                disp_to_depth(torch.cat([d[s].flatten() for d in disparities]), self.min_depth, self.max_depth),
                self.min_depth,
                self.max_depth,
            )
            for s in sorted({0, *self.scales})
        }

    def scored_frames(self, predictions: list[tuple[Sequence, Tensor]]) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """The evaluation protocol's view of every frame with ground truth: (scaled prediction, gt, mask),
        each (H, W): the mask applies the caps (and the Garg crop), the prediction is scaled per image
        (``eval_scaling``) and clamped to the caps. Frames with fewer than 10 valid pixels are skipped."""
        for seq, pred in predictions:
            if seq.depth is None:
                continue
            for t in range(len(seq)):
                scaled, mask = self._scaled_to_truth(pred[t], seq.depth[t])
                if mask.any():  # none: fewer than 10 scored pixels
                    yield scaled, seq.depth[t], mask

    def evaluate(self) -> dict[str, float]:
        """Depth metrics against ground truth (when the test data holds it), ``val_photometric`` (when a
        test sequence holds a whole frame window), saturation, and the ATE (with ground-truth poses)."""
        disparities = [self._sequence_disparities(seq) for seq in self.splits.test]  # one pass over the frames
        predictions = [(seq, self._depth_of(seq, d)) for seq, d in zip(self.splits.test, disparities)]
        metrics = self._depth_metrics(predictions) if self.has_ground_truth else {}
        photometric = self.val_photometric(predictions)
        if photometric is not None:
            metrics["val_photometric"] = photometric
        by_scale = self.saturation_by_scale(disparities)
        metrics["saturated"] = by_scale[0]
        metrics.update({f"saturated_s{s}": f for s, f in by_scale.items() if s})
        for s, fraction in by_scale.items():
            if fraction > 0.5:
                log.warning("%.0f %% of the test depths at scale %d sit at task.min_depth / max_depth: that output "
                            "has collapsed to a constant (its sigmoid saturates and passes no gradient%s); if it "
                            "persists at the next evaluation, start again with another seed", 100 * fraction, s,
                            ", abs_rel = baseline_abs_rel" if s == 0 else "; its loss term no longer trains")
        ate = self._pose_ate()
        if ate is not None:
            metrics["ate"] = ate
        return metrics

    def _depth_metrics(self, predictions: list[tuple[Sequence, Tensor]]) -> dict[str, float]:
        """Mean per-image depth metrics of :meth:`scored_frames` and of the constant-depth baseline."""
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

    def val_photometric(self, predictions: list[tuple[Sequence, Tensor]]) -> float | None:
        """The training's photometric reprojection error on every test snippet, averaged over snippets; None
        when no test sequence holds a whole frame window.

        Each snippet's target is warped from its sources with the predicted full-size depth and PoseNet's
        poses (:meth:`snippet_poses`) and scored as :meth:`loss` scores scale 0: SSIM + L1, minimum (or
        mean) over the sources, mean over the pixels; no augmentation, auto-mask or smoothness. The
        auto-mask is left out because it drops the pixels a worse depth explains worse.

        Args:
            predictions: each test sequence with its predicted depth (T, H, W) [network units].
        """
        errors = [self.snippet_photometric(seq, depth, self.snippet_poses(seq))
                  for seq, depth in predictions if self._snippet_targets(seq)]
        return torch.cat(errors).mean().item() if errors else None

    def snippet_poses(self, seq: Sequence) -> list[Tensor]:
        """PoseNet's ``src_from_dst`` for every snippet of a sequence (:meth:`_snippet_targets`), with the
        network in eval mode and the frames at the training size: one (N, 4, 4) per source offset."""
        frames = self._at_training_size(seq.frames)
        targets = torch.tensor(self._snippet_targets(seq), device=frames.device)
        self.pose_net.eval()
        chunks = [self.relative_poses(frames[t], [frames[t + o] for o in self.sources], self.sources)
                  for t in torch.split(targets, 16)]
        self.pose_net.train()
        return [torch.cat(poses) for poses in zip(*chunks)]

    def snippet_photometric(self, seq: Sequence, depth: Tensor, poses: list[Tensor]) -> Tensor:
        """(N,) photometric reprojection error of each snippet of a sequence (:meth:`val_photometric`).

        Args:
            seq: frames (T, 3, H, W) and K.
            depth: (T, H, W) depth of every frame [the poses' units].
            poses: one (N, 4, 4) ``src_from_dst`` per source offset, for the targets of
                :meth:`_snippet_targets` (:meth:`snippet_poses`, or ground truth).
        """
        targets = torch.tensor(self._snippet_targets(seq), device=seq.frames.device)
        out = []
        for index in torch.split(torch.arange(len(targets), device=targets.device), 16):
            t = targets[index]
            sources = [seq.frames[t + o] for o in self.sources]
            K = seq.K.expand(len(t), 3, 3)
            _, errors = self.reprojection_errors(seq.frames[t], sources, depth[t, None], [p[index] for p in poses], K)
            out.append(self._reduce_sources(errors).mean((1, 2, 3)))
        return torch.cat(out)

    def _pose_ate(self) -> float | None:
        """Mean ATE over test sequences with ground-truth poses: chained predicted motion, scale-aligned."""
        errors = []
        self.pose_net.eval()
        for seq in self.splits.test:
            if seq.cam_from_world is None or len(seq) < 3:
                continue
            frames = self._at_training_size(seq.frames)
            current, following = frames[:-1], frames[1:]
            chunks = zip(torch.split(current, 16), torch.split(following, 16))
            rel = torch.cat([self.relative_poses(a, [b], [1])[0] for a, b in chunks])
            # rel: (T-1, 4, 4), camera t+1 from camera t
            poses = [torch.eye(4, device=rel.device)]
            for M in rel:
                poses.append(M @ poses[-1])  # cam_t_from_cam_0
            errors.append(
                absolute_trajectory_error(
                    torch.stack(poses), seq.cam_from_world @ torch.linalg.inv(seq.cam_from_world[0])
                )
            )
        self.pose_net.train()
        return float(np.mean(errors)) if errors else None

    # ------------------------------------------------------------------ visuals and artifacts
    @torch.no_grad()
    def visuals(self, logger: Logger, step: int) -> None:
        """Labelled rows (:func:`runner.visuals.panel_row`), one per test frame (up to 4, spread over the first
        test sequence): ``test/input|prediction|truth|abs_rel`` (input | predicted and true inverse depth on
        one colour scale | abs_rel error, as :meth:`evaluate` scores it) or, without ground truth,
        ``test/input|prediction``; and the last training batch's ``train/target_vs_warped_source`` and
        ``train/automask``."""
        seq = self.splits.test[0]
        every = max(1, len(seq) // 4)
        frames = seq.frames[::every][:4]
        self.depth_net.eval()
        depth = self.predict_depth(frames)
        self.depth_net.train()
        inputs = Panel("input frame", frames.permute(0, 2, 3, 1))
        if seq.depth is None:
            logger.images("test/input|prediction", panel_row([inputs, prediction_panel(depth)]), step)
        else:
            panels = self._truth_panels(depth, seq.depth[::every][:4])
            logger.images("test/input|prediction|truth|abs_rel", panel_row([inputs, *panels]), step)
        if self._last:
            target, warped = (self._last[k][:2].permute(0, 2, 3, 1) for k in ("target", "warped"))
            source = f"source frame {self.sources[0]:+d} warped to the target"
            row = panel_row([Panel("target frame (training batch)", target), Panel(source, warped)])
            logger.images("train/target_vs_warped_source", row, step)
            if self._last["mask"] is not None:
                row = panel_row([Panel("auto-mask: white pixels enter the loss", grey(self._last["mask"][:2, 0]))])
                logger.images("train/automask", row, step)

    def _truth_panels(self, depth: Tensor, gt: Tensor) -> list[Panel]:
        """Predicted and true inverse depth on one colour scale (the truth's 2-98 % range) and the abs_rel
        error (0 to 0.5, clipped), with each frame's mean in its caption; pixels without ground truth grey.

        Args:
            depth: (B, H, W) predicted depth [network units], scaled per frame as in :meth:`scored_frames`.
            gt: (B, H, W) ground-truth depth; pixels outside the caps (and the Garg crop) are not scored.
        """
        scaled, mask = (torch.stack(x) for x in zip(*(self._scaled_to_truth(d, g) for d, g in zip(depth, gt))))
        inverse, true_inverse = 1 / scaled, 1 / gt.clamp(min=1e-6)
        lo, hi = inverse_depth_range(true_inverse[mask] if mask.any() else inverse)
        error = (scaled - gt).abs() / gt.clamp(min=1e-6)
        captions = [
            f"abs_rel error, mean {e[m].mean():.3f}" if m.any() else "abs_rel error" for e, m in zip(error, mask)
        ]
        scaling = {"median": ", median-scaled", "gt": ", scaled to the truth", "none": ""}[self.eval_scaling]
        return [
            mapped(f"prediction: 1/depth{scaling}", inverse, lo, hi),
            mapped("ground truth: 1/depth", true_inverse, lo, hi, valid=mask),
            mapped(captions, error, 0.0, 0.5, "inferno", valid=mask, ticks=("0", "0.5+")),
        ]

    def _scaled_to_truth(self, depth: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
        """(H, W) predicted depth -> scaled to (H, W) ``gt`` and clamped to the caps as :meth:`scored_frames`
        does, and the (H, W) mask of the scored pixels (none when fewer than 10: the frame is not scored)."""
        mask = (gt > self.eval_min_depth) & (gt < self.eval_max_depth)
        if self.garg_crop:
            mask = mask & garg_crop_mask(*gt.shape, device=gt.device)
        if mask.sum() < 10:
            return depth, torch.zeros_like(mask)
        scaled = align_scale(depth, gt, mask, method=self.eval_scaling)
        return scaled.clamp(self.eval_min_depth, self.eval_max_depth), mask

    def save(self, out_dir: Path) -> None:
        """``weights.pt``, the test sequences' predicted depth (:func:`write_depth_maps`) and ``test_depth.mp4``
        (``.gif`` without ffmpeg): every test frame beside its predicted inverse depth."""
        out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "depth_net": self.depth_net.state_dict(),
                "pose_net": self.pose_net.state_dict(),
                "min_depth": self.min_depth,
                "max_depth": self.max_depth,
            },
            out_dir / "weights.pt",
        )
        panels = [(seq, write_depth_maps(pred, out_dir / "test_depth" / seq.name)) for seq, pred in self.predictions()]
        gif_every = max(1, math.ceil(sum(len(seq) for seq, _ in panels) / 150))  # a GIF of <= 150 frames
        write_video(out_dir / "test_depth", depth_video(panels), VIDEO_FPS, gif=False, gif_every=gif_every)
        (out_dir / "README.txt").write_text(
            "weights.pt: depth_net and pose_net state dicts (torch.load(..., weights_only=True)).\n"
            "test_depth/<sequence>/<frame>.npy: predicted depth in the network's own (monocular, unknown) scale;\n"
            "<frame>.png: the same as 16-bit PNG in 1/1000 units; <frame>_color.png: inverse depth to look at.\n"
            "test_depth.mp4 (test_depth.gif without imageio-ffmpeg): the test frames beside their predicted inverse\n"
            "depth.\n"
        )

    def summary(self, metrics):
        if not self.has_ground_truth:
            return (f"val_photometric={metrics['val_photometric']:.4f} (no ground-truth depth: "
                    f"{self._no_ground_truth_reason()}, so no abs_rel; the photometric reprojection error on the "
                    "held-out test snippets)")
        text = (f"abs_rel={metrics['abs_rel']:.4f} (constant-depth baseline {metrics['baseline_abs_rel']:.4f}), "
                f"a1={metrics['a1']:.3f}")
        if "ate" in metrics:
            text += f", ATE={metrics['ate']:.4f}"
        if "val_photometric" in metrics:
            text += f", val_photometric={metrics['val_photometric']:.4f}"
        return text


def _to(seq: Sequence, device) -> Sequence:
    def move(x: Tensor | None) -> Tensor | None:
        return None if x is None else x.to(device)

    return Sequence(seq.name, seq.frames.to(device), seq.K.to(device), move(seq.depth), move(seq.cam_from_world))


def _upsampled(disp: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, 1, h, w) -> (B, 1, H, W): bilinear, a no-op when the size already matches."""
    if tuple(disp.shape[-2:]) == tuple(size):
        return disp
    return F.interpolate(disp, size=tuple(size), mode="bilinear", align_corners=False)
