"""Unsupervised monocular depth and ego-motion from video (SfMLearner, Zhou et al. CVPR 2017;
monodepth2, Godard et al. ICCV 2019).

A DepthNet predicts the disparity of a target frame, a PoseNet the motion to each source frame of
the window; the sources are inverse-warped into the target view and compared photometrically. No
depth label is used in training; ground truth only enters :meth:`DepthFromVideo.evaluate`. Without it
(the user's own video) the main metric is ``val_photometric``, the same photometric reprojection error
on the held-out test snippets.

The task composes one part per job: :mod:`~tasks.depth_from_video.snippets` (which snippets a video holds, a step's
batch and its augmentation), :mod:`~tasks.depth_from_video.coarse_phase` (the first steps on downsampled frames),
:mod:`~tasks.depth_from_video.objective` (the loss terms), :mod:`~tasks.depth_from_video.evaluation` (the metrics)
and :mod:`~tasks.depth_from_video.artifacts` (images, depth maps, video, weights). It runs the networks itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runner.errors import ConfigError, InputError
from runner.logging import Logger
from runner.render.base import PRIMITIVES
from runner.task import Task
from tasks.depth_from_video.artifacts import log_test_panels, log_training_views, write_run_artifacts
from tasks.depth_from_video.coarse_phase import CoarsePhase
from tasks.depth_from_video.data import FramesVideo, Sequence, Splits, check_video_source
from tasks.depth_from_video.evaluation import EvalProtocol, chained_trajectory, saturation_metrics
from tasks.depth_from_video.metrics import absolute_trajectory_error
from tasks.depth_from_video.models import DepthNet, PoseNet, disp_to_depth, pose_to_matrix
from tasks.depth_from_video.objective import DEFAULT_LOSSES, TrainingViews, ViewSynthesisLoss
from tasks.depth_from_video.snippets import Batch, FrameWindow, SnippetSampler

log = logging.getLogger("dwx")


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
        losses: weight of each loss term, >= 0 (0 = off); every term must be given
            (:mod:`~tasks.depth_from_video.objective`). ``photometric``: the SSIM + L1 reprojection error.
            ``smoothness``: edge-aware smoothness of mean-normalised disparity. ``scale_anchor``: holds the
            batch's mean log disparity (per image, the log of its mean sigmoid disparity) at
            ``log(depth_net.init_disparity)``. The photometric loss cannot tell depth and translation scaled
            together apart, so that common scale is a free gauge; Adam's per-parameter steps can drift along it
            until the sigmoid saturates at ``min_depth`` or ``max_depth`` and passes no gradient. The term fixes
            the gauge and leaves every depth ratio and the photometric optimum as they were.
        ssim_alpha: SSIM share of the photometric error (0.85).
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
            (:mod:`~tasks.depth_from_video.coarse_phase`); 0 = off.
        coarse_factor: downsampling factor of the coarse phase, >= 1; each side of the coarse frames is
            the full side / factor rounded to the nearest multiple of the network's stride (64x192 and
            factor 2: 32x96; 96x320: 64x160).
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
        losses: Mapping[str, float] = DEFAULT_LOSSES,
        ssim_alpha: float = 0.85,
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
        coarse_steps: int = 3000,
        coarse_factor: float = 2.0,
        seed: int = 0,
    ):
        super().__init__(seed)
        self.window = FrameWindow(frame_window)
        if batch_size < 1:
            raise ConfigError(f"task.batch_size must be >= 1, got {batch_size}")
        if not 0 < min_depth < max_depth:
            raise ConfigError(f"need 0 < task.min_depth < task.max_depth, got {min_depth}, {max_depth}")
        if translation_scale <= 0:
            raise ConfigError(f"task.translation_scale must be > 0, got {translation_scale}")
        if not getattr(data, "intrinsics_known", True):
            raise ConfigError(
                "mode=learn needs the camera's intrinsics: give data.intrinsics=<yaml/json> (mode=fit estimates them)"
            )
        check_video_source(data)
        self.data = data
        self.depth_net, self.pose_net = depth_net, pose_net
        self.batch_size = int(batch_size)
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.color_jitter, self.flip = float(color_jitter), float(flip)
        self.translation_scale = float(translation_scale)
        self.eval_protocol = EvalProtocol(eval_scaling, eval_min_depth, eval_max_depth, garg_crop)
        self.objective = ViewSynthesisLoss(
            losses=losses,
            scales=scales,
            num_scales=depth_net.num_scales,
            scale_resolution=scale_resolution,
            ssim_alpha=ssim_alpha,
            min_reprojection=min_reprojection,
            automask=automask,
            warp_min_depth_ratio=warp_min_depth_ratio,
            depth_range=(self.min_depth, self.max_depth),
            anchor_disparity=depth_net.init_disparity,
        )
        self.coarse_phase = CoarsePhase(coarse_steps, coarse_factor, depth_net.stride)
        self.splits: Splits | None = None
        self.sampler: SnippetSampler | None = None
        self.has_ground_truth = True
        self.last_views: TrainingViews | None = None  # the last step's scale-0 views, for visuals

    # ------------------------------------------------------------------ data
    def setup(self, device):
        super().setup(device)
        splits = self.data.load()
        for seq in splits.train + splits.test:
            self.depth_net.check_image_size(*seq.image_size)
        sizes = {seq.image_size for seq in splits.train}
        if len(sizes) > 1:
            raise InputError(f"training sequences differ in image size: {sorted(sizes)}")
        self.splits = Splits([s.to(device) for s in splits.train], [s.to(device) for s in splits.test])
        self.sampler = SnippetSampler(self.splits.train, self.window, self.batch_size, self.flip, self.color_jitter)
        self._choose_metric(self.splits.test)
        if isinstance(self.data, FramesVideo):
            log.warning(
                "mode=learn trains networks on %d frames of this one video and scores them on the last %d; for "
                "the depth of every frame of a video, mode=fit is the method (README: Depth for your own video)",
                sum(len(s) for s in splits.train),
                sum(len(s) for s in splits.test),
            )

    def _choose_metric(self, test: list[Sequence]) -> None:
        """``abs_rel`` when a test sequence holds ground-truth depth, else ``val_photometric``, which needs
        one test snippet (a whole frame window): checked here, before any training."""
        self.has_ground_truth = any(seq.depth is not None for seq in test)
        if self.has_ground_truth:
            self.metric = "abs_rel"
            return
        if not any(self.window.targets(seq) for seq in test):
            raise InputError(
                f"without ground-truth depth ({self._no_ground_truth_reason()}) a run is scored by the photometric "
                f"error on held-out snippets, but the frame window {self.window.offsets} needs {self.window.length} "
                f"test frames and the longest test sequence has {max(len(s) for s in test)}: raise "
                "data.test_fraction or give more frames"
            )
        self.metric = "val_photometric"
        log.info(
            "no ground-truth depth (%s): the main metric is val_photometric, the photometric reprojection "
            "error on the held-out test snippets; no abs_rel",
            self._no_ground_truth_reason(),
        )

    def _no_ground_truth_reason(self) -> str:
        """Why the test data holds no depth, in the user's terms."""
        if isinstance(self.data, FramesVideo):
            return "data.depth_path not set"
        return "the test sequences hold none"

    def steps_per_epoch(self) -> int:
        return max(1, len(self.sampler) // self.batch_size)

    def plan(self, total_steps: int) -> None:
        """The coarse phase fitted to the run (:meth:`CoarsePhase.fit_to_run`)."""
        self.coarse_phase.fit_to_run(total_steps)

    def param_groups(self):
        return {"depth": list(self.depth_net.parameters()), "pose": list(self.pose_net.parameters())}

    # ------------------------------------------------------------------ loss
    def batch(self, step: int) -> Batch:
        """This rank's share of step ``step``'s snippets (:meth:`SnippetSampler.draw`), at the size the step trains
        at (:meth:`CoarsePhase.resize_batch`)."""
        return self.coarse_phase.resize_batch(step, self.sampler.draw(self.step_generator(step), self))

    def loss(self, step: int) -> dict[str, Tensor]:
        """The weighted terms of :class:`ViewSynthesisLoss` on this rank's share of the step's snippets; the
        networks read the frames colour-jittered, the loss compares them as drawn."""
        batch = self.batch(step)
        inputs = self.sampler.jitter([batch.target, *batch.sources], batch.generator, self)
        disparities = self.depth_net(inputs[0])
        poses = self.relative_poses(inputs[0], inputs[1:], self.window.sources)
        terms, views = self.objective(batch, disparities, poses, self)
        if views is not None:
            self.last_views = views
        return terms

    # ------------------------------------------------------------------ the networks
    def predict_depth(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, H, W) depth at full resolution [network scale units]. In the coarse phase the
        network reads the frames at the coarse size and its disparity is upsampled (bilinear) to (H, W)."""
        return self._full_size_depth(self.depth_net(self.coarse_phase.at_training_size(images))[0], images.shape[-2:])

    def _full_size_depth(self, disparity: Tensor, size: tuple[int, int]) -> Tensor:
        """(B, 1, h, w) scale-0 disparity -> (B, H, W) depth [network units] at ``size`` (H, W)."""
        if tuple(disparity.shape[-2:]) != tuple(size):
            disparity = F.interpolate(disparity, size=tuple(size), mode="bilinear", align_corners=False)
        return disp_to_depth(disparity, self.min_depth, self.max_depth)[:, 0]

    def relative_poses(self, target: Tensor, sources: list[Tensor], offsets: list[int]) -> list[Tensor]:
        """One (B, 4, 4) ``src_from_dst`` per source: the transform taking target-camera points into that
        source camera.

        Each pair is fed in temporal order and the result inverted for past sources (monodepth2). All
        pairs go through PoseNet as one batch (it has no batch statistics, so this equals one call per
        pair; at 64x192, batch 8, two pairs: 6.7-7.2 ms forward + backward against 8.3 ms).

        Args:
            target: (B, 3, H, W).
            sources: [(B, 3, H, W)], one per offset.
            offsets: each source's frame offset from the target (its sign orders the pair).
        """
        pairs = [torch.cat([src, target] if o < 0 else [target, src], 1) for src, o in zip(sources, offsets)]
        motions = self.pose_net(torch.cat(pairs)).split(target.shape[0])  # (B, 6) each: second_from_first
        return [
            pose_to_matrix(m[:, :3], self.translation_scale * m[:, 3:], invert=o < 0) for m, o in zip(motions, offsets)
        ]

    @torch.no_grad()
    def _sequence_disparities(self, seq: Sequence) -> list[Tensor]:
        """Every scale's disparity of a sequence, (T, 1, h / 2^s, w / 2^s), with the network in eval mode
        and the frames at the training size (:meth:`CoarsePhase.at_training_size`), 16 frames at a time."""
        with _eval_mode(self.depth_net):
            chunks = [self.depth_net(self.coarse_phase.at_training_size(c)) for c in torch.split(seq.frames, 16)]
        return [torch.cat(scale) for scale in zip(*chunks)]

    def predictions(self, sequences: list[Sequence] | None = None) -> list[tuple[Sequence, Tensor]]:
        """Each sequence (default: the test split) with its predicted depth (T, H, W) [network units]."""
        return [
            (seq, self._full_size_depth(self._sequence_disparities(seq)[0], seq.image_size))
            for seq in (self.splits.test if sequences is None else sequences)
        ]

    def snippet_poses(self, seq: Sequence) -> list[Tensor]:
        """PoseNet's ``src_from_dst`` for every snippet of a sequence (``window.targets``), with the network in
        eval mode and the frames at the training size: one (N, 4, 4) per source offset."""
        frames = self.coarse_phase.at_training_size(seq.frames)
        targets = torch.tensor(self.window.targets(seq), device=frames.device)
        sources = self.window.sources
        with _eval_mode(self.pose_net):
            chunks = [
                self.relative_poses(frames[t], [frames[t + o] for o in sources], sources)
                for t in torch.split(targets, 16)
            ]
        return [torch.cat(poses) for poses in zip(*chunks)]

    def _trajectory(self, seq: Sequence) -> Tensor:
        """(T, 4, 4) cam_t_from_cam_0 of a sequence: PoseNet's motion between consecutive frames (eval mode, the
        training size), chained."""
        frames = self.coarse_phase.at_training_size(seq.frames)
        chunks = zip(torch.split(frames[:-1], 16), torch.split(frames[1:], 16))
        with _eval_mode(self.pose_net):
            motions = torch.cat([self.relative_poses(a, [b], [1])[0] for a, b in chunks])  # camera t+1 from t
        return chained_trajectory(motions)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float]:
        """Depth metrics against ground truth (when the test data holds it), ``val_photometric`` (when a
        test sequence holds a whole frame window), saturation, and the ATE (with ground-truth poses)."""
        test = self.splits.test
        disparities = [self._sequence_disparities(seq) for seq in test]  # one pass over the frames
        predictions = [(seq, self._full_size_depth(d[0], seq.image_size)) for seq, d in zip(test, disparities)]
        metrics = self.eval_protocol.depth_metrics(predictions) if self.has_ground_truth else {}
        photometric = self.val_photometric(predictions)
        if photometric is not None:
            metrics["val_photometric"] = photometric
        metrics.update(saturation_metrics(disparities, self.objective.scales, self.min_depth, self.max_depth))
        ate = self._pose_ate()
        if ate is not None:
            metrics["ate"] = ate
        return metrics

    def val_photometric(self, predictions: list[tuple[Sequence, Tensor]]) -> float | None:
        """The training's photometric reprojection error on every test snippet, averaged over snippets; None
        when no test sequence holds a whole frame window.

        Each snippet's target is warped from its sources with the predicted full-size depth and PoseNet's
        poses (:meth:`snippet_poses`) and scored by :meth:`ViewSynthesisLoss.snippet_errors`. The auto-mask
        is left out because it drops the pixels a worse depth explains worse.

        Args:
            predictions: each test sequence with its predicted depth (T, H, W) [network units].
        """
        errors = [
            self.objective.snippet_errors(seq, depth, self.snippet_poses(seq), self.window)
            for seq, depth in predictions
            if self.window.targets(seq)
        ]
        return torch.cat(errors).mean().item() if errors else None

    def _pose_ate(self) -> float | None:
        """Mean ATE over test sequences with ground-truth poses: chained predicted motion, scale-aligned."""
        errors = [
            absolute_trajectory_error(
                self._trajectory(seq), seq.cam_from_world @ torch.linalg.inv(seq.cam_from_world[0])
            )
            for seq in self.splits.test
            if seq.cam_from_world is not None and len(seq) >= 3
        ]
        return float(np.mean(errors)) if errors else None

    # ------------------------------------------------------------------ visuals and artifacts
    @torch.no_grad()
    def visuals(self, logger: Logger, step: int) -> None:
        """Up to 4 test frames, spread over the first test sequence (:func:`artifacts.log_test_panels`), and the
        last training batch (:func:`artifacts.log_training_views`)."""
        seq = self.splits.test[0]
        every = max(1, len(seq) // 4)
        frames = seq.frames[::every][:4]
        with _eval_mode(self.depth_net):
            depth = self.predict_depth(frames)
        truth = None if seq.depth is None else seq.depth[::every][:4]
        log_test_panels(logger, step, frames, depth, truth, self.eval_protocol)
        if self.last_views is not None:
            log_training_views(logger, step, self.last_views, self.window.sources[0])

    def save(self, out_dir: Path) -> None:
        """``weights.pt``, the test sequences' predicted depth and ``test_depth.mp4``
        (:func:`artifacts.write_run_artifacts`)."""
        weights = {
            "depth_net": self.depth_net.state_dict(),
            "pose_net": self.pose_net.state_dict(),
            "min_depth": self.min_depth,
            "max_depth": self.max_depth,
            "image_size": list(self.splits.train[0].image_size),  # (H, W) trained at: data.image_size may be H only
        }
        write_run_artifacts(out_dir, weights, self.predictions())

    def summary(self, metrics):
        if not self.has_ground_truth:
            return (
                f"val_photometric={metrics['val_photometric']:.4f} (no ground-truth depth: "
                f"{self._no_ground_truth_reason()}, so no abs_rel; the photometric reprojection error on the "
                "held-out test snippets)"
            )
        text = (
            f"abs_rel={metrics['abs_rel']:.4f} (constant-depth baseline {metrics['baseline_abs_rel']:.4f}), "
            f"a1={metrics['a1']:.3f}"
        )
        if "ate" in metrics:
            text += f", ATE={metrics['ate']:.4f}"
        if "val_photometric" in metrics:
            text += f", val_photometric={metrics['val_photometric']:.4f}"
        return text


@contextmanager
def _eval_mode(net: nn.Module) -> Iterator[None]:
    """``net`` in eval mode inside the block, in training mode after it."""
    net.eval()
    try:
        yield
    finally:
        net.train()
