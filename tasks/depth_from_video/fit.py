"""depth_from_video ``mode=fit``: one video's own depth, camera path and (optionally) intrinsics, optimised directly
through differentiable warping: dense photometric bundle adjustment, with no network and no training set.

The unknowns, each a module with one job:

=====================  =========================================================================================
:class:`DepthPyramid`  per-frame log depth, the sum of bilinearly upsampled levels at 1/8, 1/4, 1/2 and 1 of the
                       resolution; levels join coarse to fine (``level_start``)
:class:`CameraPath`    per-frame camera pose relative to frame 0 (axis-angle + translation); frame 0 is fixed
:class:`Intrinsics`    the pinhole K: fixed when the data source knows it, else one focal length (fx = fy) and the
                       principal point, started from a field-of-view guess (Gordon et al., ICCV 2019)
=====================  =========================================================================================

The loss is the learned mode's :class:`~tasks.depth_from_video.objective.ViewSynthesisLoss` (SSIM + L1 reprojection
error, averaged over the sources, edge-aware smoothness of mean-normalised disparity), applied at the pyramid's
scales. Each frame's sources are first a fixed frame window, then the frames that give it set amounts of parallax
(:mod:`~tasks.depth_from_video.parallax`). The scale gauge (depth and translation scaled together leave every
reprojection unchanged) is fixed by construction: every frame's log depth is shifted so that frame 0's mean log depth
is ``log(init_depth)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runner.errors import ConfigError, InputError
from runner.geometry.cameras import PinholeCamera
from runner.geometry.transforms import invert_rigid, pose_vec_to_matrix
from runner.logging import Logger
from runner.render.base import PRIMITIVES
from runner.task import Task
from tasks.depth_from_video.artifacts import log_test_panels, write_fit_artifacts
from tasks.depth_from_video.data import Sequence, check_video_source
from tasks.depth_from_video.evaluation import EvalProtocol, chained_trajectory
from tasks.depth_from_video.metric_scale import scale_from_baseline, scale_from_camera_height
from tasks.depth_from_video.metrics import absolute_trajectory_error
from tasks.depth_from_video.objective import ViewSynthesisLoss
from tasks.depth_from_video.parallax import baseline_parallax, parallax_sources
from tasks.depth_from_video.pose_init import align_rotations
from tasks.depth_from_video.snippets import Batch, FrameWindow

log = logging.getLogger("dwx")

FIT_LOSSES = MappingProxyType({"photometric": 1.0, "smoothness": 0.3})  # per-pixel depth: more smoothing than a network
INTRINSICS = ("auto", "known", "estimate")
PARALLAX_EVERY = 10  # steps between two choices of sources by parallax


class DepthPyramid(nn.Module):
    """Per-frame log depth as a sum of levels at 1/2^(n-1), ..., 1/2, 1 of the resolution.

    Args:
        frames: T, the number of frames.
        image_size: (H, W) of the full-resolution level.
        levels: n, the number of levels; level s (0 = full resolution) is (T, 1, ceil(H / 2^s), ceil(W / 2^s)).
        init_depth: every frame starts at this constant depth [gauge units].

    Attributes:
        levels: n parameters, finest first (index s = scale s).
    """

    def __init__(self, frames: int, image_size: tuple[int, int], levels: int, init_depth: float):
        super().__init__()
        H, W = image_size
        self.levels = nn.ParameterList(
            nn.Parameter(torch.zeros(frames, 1, math.ceil(H / 2**s), math.ceil(W / 2**s))) for s in range(levels)
        )
        self.log_init = math.log(init_depth)

    def forward(self, index: Tensor, trained: int) -> list[Tensor]:
        """Log depth of the frames ``index`` (b,) at every scale, [(b, 1, H_s, W_s)], finest first: scale s is the sum
        of levels n-1 .. s, each upsampled to scale s. Only the ``trained`` coarsest levels pass gradients (the others
        stay where they are). The gauge shift that holds frame 0's mean full-resolution log depth at ``log(init_depth)``
        is added to every frame."""
        n = len(self.levels)
        sums: list[Tensor] = []
        frame0: Tensor | None = None
        for s in reversed(range(n)):
            level = self.levels[s] if n - s <= trained else self.levels[s].detach()
            part0 = level[:1]
            part = level[index]
            if sums:
                part = part + _upsample(sums[0], part.shape[-2:])
                part0 = part0 + _upsample(frame0, part0.shape[-2:])
            sums.insert(0, part)
            frame0 = part0
        shift = self.log_init - frame0.mean()
        return [x + shift for x in sums]


def _upsample(x: Tensor, size: tuple[int, int]) -> Tensor:
    """(b, 1, h, w) -> (b, 1, *size), bilinear with pixel centres kept (align_corners=False)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class CameraPath(nn.Module):
    """Every frame's camera relative to frame 0, as a chain of per-frame motions: ``cam_t_from_cam_t-1`` =
    (axis-angle, translation) of frames 1..T-1, both started at 0 (no motion); frame 0 is the identity. A motion learnt
    between two frames carries the later frames with it, so the path moves as a whole before its details settle.

    Args:
        frames: T >= 2.
    """

    def __init__(self, frames: int):
        super().__init__()
        self.rotation = nn.Parameter(torch.zeros(frames - 1, 3))  # axis-angle [rad]
        self.translation = nn.Parameter(torch.zeros(frames - 1, 3))  # [fit units]

    def forward(self) -> Tensor:
        """(T, 4, 4) ``cam_t_from_cam_0``."""
        return chained_trajectory(pose_vec_to_matrix(self.rotation, self.translation))


class Exposure(nn.Module):
    """Each frame's brightness and colour response, as an affine map per channel: ``I_t = exp(a_t) * L + b_t`` of the
    scene's radiance ``L`` (Engel et al., "Direct Sparse Odometry", 2018, with a gain per colour channel for auto white
    balance). A source seen from a target is mapped into the target's exposure before it is compared:
    ``exp(a_t - a_s) * (I_s - b_s) + b_t``. Frame 0's map is the identity (the gauge); all start at the identity.

    Args:
        frames: T >= 2.
    """

    def __init__(self, frames: int):
        super().__init__()
        self.log_gain = nn.Parameter(torch.zeros(frames - 1, 3))
        self.bias = nn.Parameter(torch.zeros(frames - 1, 3))

    def forward(self, source: Tensor, source_index: Tensor, target_index: Tensor) -> Tensor:
        """(B, 3, H, W) source frames of (B,) indices -> seen with the exposure of the (B,) target frames."""
        zero = self.log_gain.new_zeros(1, 3)
        log_gain, bias = torch.cat([zero, self.log_gain]), torch.cat([zero, self.bias])  # (T, 3) with frame 0's
        gain = (log_gain[target_index] - log_gain[source_index]).exp()[..., None, None]
        return gain * (source - bias[source_index][..., None, None]) + bias[target_index][..., None, None]


class Intrinsics(nn.Module):
    """The pinhole intrinsics of a video: fixed, or estimated as one focal length and the principal point.

    Args:
        K: (3, 3) the source's intrinsics [px]: the truth when ``estimate`` is False, else only for reporting.
        image_size: (H, W).
        estimate: optimise ``log_focal`` (fx = fy) and ``principal`` (the offset of (cx, cy) from the image centre,
            in units of the width), started from ``fov``.
        fov: the horizontal field of view the estimate starts from [deg], in (0, 180).
    """

    def __init__(self, K: Tensor, image_size: tuple[int, int], estimate: bool, fov: float):
        super().__init__()
        if not 0 < fov < 180:
            raise ConfigError(f"data.fov / task.fov must be in (0, 180) degrees, got {fov}")
        self.image_size, self.estimate = tuple(image_size), bool(estimate)
        self.register_buffer("K_known", K.clone(), persistent=False)
        H, W = self.image_size
        self.log_focal = nn.Parameter(torch.tensor(math.log(0.5 * W / math.tan(math.radians(fov) / 2))))
        self.principal = nn.Parameter(torch.zeros(2))
        self.log_focal.requires_grad_(self.estimate)
        self.principal.requires_grad_(self.estimate)

    def forward(self) -> Tensor:
        """(3, 3) K [px] of (H, W)."""
        if not self.estimate:
            return self.K_known
        H, W = self.image_size
        f = self.log_focal.exp()
        cx, cy = (W - 1) / 2 + W * self.principal[0], (H - 1) / 2 + W * self.principal[1]
        zero, one = torch.zeros_like(f), torch.ones_like(f)
        return torch.stack([torch.stack([f, zero, cx]), torch.stack([zero, f, cy]), torch.stack([zero, zero, one])])


class FitVideo(Task):
    """Fit one video's depth, camera path and intrinsics by dense photometric bundle adjustment.

    Args:
        data: a source with ``load() -> Splits`` (:mod:`tasks.depth_from_video.data`); the video fitted is
            ``splits.test[sequence]``; a source with ``test_fraction`` is loaded whole (``test_fraction`` = 0). A
            source may say ``intrinsics_known = False`` (``data=frames`` without ``data.intrinsics``) and give the
            field of view its K was guessed from as ``fov``.
        sequence: index of the test sequence to fit (the streets: one of the held-out videos).
        frame_window: frame offsets compared with each target (0 = the target); a source outside the video is taken
            mirrored (offset -o), so every frame is fitted.
        source_parallax: parallax goals [px]; when given, from ``parallax_from`` of the run on each target's sources
            are the nearest frames before and after it whose camera has moved that far at its mean depth
            (:mod:`~tasks.depth_from_video.parallax`, measured on the fit's own path and depth); null = frame_window
            throughout.
        parallax_from: fraction of the run, in [0, 1), after which ``source_parallax`` picks the sources.
        batch_size: target frames per step, drawn without replacement; null = every frame.
        levels: depth pyramid levels (4: 1/8, 1/4, 1/2, 1 resolution).
        level_start: fraction of the run at which each level starts training, coarsest first (one per level).
        init_depth: the constant depth every frame starts at, and frame 0's mean depth throughout (the gauge).
        min_depth, max_depth: depth is clamped into this range for warping [gauge units].
        intrinsics: ``auto`` (estimate when the source has none), ``known`` (the source's; refused when it has
            none) or ``estimate`` (ignore the source's K and estimate it; the source's K is reported as the truth).
        fov: the horizontal field of view an estimate starts from [deg], when the source gives none.
        scales: pyramid scales compared in the loss, each at its own resolution (0 = full).
        losses, ssim_alpha, min_reprojection, automask, warp_min_depth_ratio: as in
            :class:`~tasks.depth_from_video.objective.ViewSynthesisLoss`; ``scale_anchor`` must be 0 (the gauge is
            fixed by construction).
        exposure: fit each frame's affine colour response (:class:`Exposure`, parameter group ``exposure``).
        pose_init_steps: Adam steps per scale of aligning consecutive frames' rotations before the fit
            (:func:`~tasks.depth_from_video.pose_init.align_rotations`); 0 = the path starts at rest.
        eval_scaling, eval_min_depth, eval_max_depth, garg_crop: :class:`EvalProtocol`.
        seed: the targets of each step.
    """

    metric = "abs_rel"
    mode = "min"
    renders = PRIMITIVES  # the embedded streets, through the data source (renderer=raycast)

    def __init__(
        self,
        data,
        sequence: int = 0,
        frame_window: list[int] = (-12, -6, -3, -1, 0, 1, 3, 6, 12),
        source_parallax: list[float] | None = (1.0, 2.0, 4.0, 8.0, 16.0),
        parallax_from: float = 0.1,
        batch_size: int | None = 8,
        levels: int = 4,
        level_start: list[float] = (0.0, 0.1, 0.2, 0.3),
        init_depth: float = 1.0,
        min_depth: float = 0.01,
        max_depth: float = 100.0,
        intrinsics: str = "auto",
        fov: float = 60.0,
        scales: list[int] = (0, 1, 2, 3),
        losses: Mapping[str, float] = FIT_LOSSES,
        ssim_alpha: float = 0.85,
        min_reprojection: bool = False,
        automask: bool = False,
        exposure: bool = False,
        pose_init_steps: int = 100,
        warp_min_depth_ratio: float = 0.25,
        eval_scaling: str = "median",
        eval_min_depth: float = 1e-3,
        eval_max_depth: float = 80.0,
        garg_crop: bool = False,
        seed: int = 0,
    ):
        super().__init__(seed)
        if levels < 1 or len(level_start) != levels or any(not 0 <= f < 1 for f in level_start):
            raise ConfigError(
                f"task.level_start needs one fraction in [0, 1) per level (task.levels={levels}), "
                f"got {list(level_start)}"
            )
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"task.batch_size must be >= 1 or null (every frame), got {batch_size}")
        if not 0 < min_depth < init_depth < max_depth:
            raise ConfigError(
                f"need 0 < task.min_depth < task.init_depth < task.max_depth, got {min_depth}, "
                f"{init_depth}, {max_depth}"
            )
        if intrinsics not in INTRINSICS:
            raise ConfigError(f"task.intrinsics must be one of {', '.join(INTRINSICS)}, got {intrinsics!r}")
        if sequence < 0:
            raise ConfigError(f"task.sequence must be >= 0, got {sequence}")
        if source_parallax is not None and (not source_parallax or any(g <= 0 for g in source_parallax)):
            raise ConfigError(f"task.source_parallax must be null or goals > 0 [px], got {list(source_parallax)}")
        if not 0 <= parallax_from < 1:
            raise ConfigError(f"task.parallax_from must be in [0, 1), got {parallax_from}")
        if pose_init_steps < 0:
            raise ConfigError(f"task.pose_init_steps must be >= 0 (0 = off), got {pose_init_steps}")
        check_video_source(data)
        self.window = FrameWindow(frame_window)
        self.parallax_goals = None if source_parallax is None else [float(g) for g in source_parallax]
        self.parallax_from, self.parallax_step = float(parallax_from), 0
        self.source_table: Tensor | None = None  # (T, S) source indices of every target once parallax picks them
        self.data, self.sequence, self.batch_size = data, int(sequence), batch_size
        self.level_start, self.init_depth = [float(f) for f in level_start], float(init_depth)
        self.level_steps = [0] * levels
        self.num_levels, self.depth_range = int(levels), (float(min_depth), float(max_depth))
        self.intrinsics_mode, self.fov, self.fit_exposure = intrinsics, float(fov), bool(exposure)
        self.pose_init_steps = int(pose_init_steps)
        self.objective = ViewSynthesisLoss(
            losses=losses,
            scales=scales,
            num_scales=levels,
            scale_resolution="native",
            ssim_alpha=ssim_alpha,
            min_reprojection=min_reprojection,
            automask=automask,
            warp_min_depth_ratio=warp_min_depth_ratio,
            depth_range=self.depth_range,
            anchor_disparity=None,
        )
        self.eval_protocol = EvalProtocol(eval_scaling, eval_min_depth, eval_max_depth, garg_crop)
        self.metric_protocol = EvalProtocol("none", eval_min_depth, eval_max_depth, garg_crop)  # depth in metres
        self.seq: Sequence | None = None

    # ------------------------------------------------------------------ data and parameters
    def setup(self, device):
        if hasattr(self.data, "test_fraction"):
            self.data.test_fraction = 0.0  # a fit is scored on the frames it fits: the whole video
        test = self.data.load().test
        if self.sequence >= len(test):
            raise ConfigError(f"task.sequence={self.sequence}, but the data holds {len(test)} test sequence(s)")
        seq = test[self.sequence]
        if len(seq) < 2:
            raise InputError(f"the video has {len(seq)} frame(s): a fit compares frames, give at least 2")
        known = getattr(self.data, "intrinsics_known", True)
        if self.intrinsics_mode == "known" and not known:
            raise ConfigError(
                "task.intrinsics=known, but the data has none: give data.intrinsics or task.intrinsics=auto"
            )
        estimate = self.intrinsics_mode == "estimate" or not known
        fov = getattr(self.data, "fov", None) or self.fov
        self.seq = seq
        self.depth = DepthPyramid(len(seq), seq.image_size, self.num_levels, self.init_depth)
        self.path = CameraPath(len(seq))
        self.intrinsics = Intrinsics(seq.K, seq.image_size, estimate, fov)
        self.exposure = Exposure(len(seq)) if self.fit_exposure else None
        self.intrinsics_known = known
        log.info(
            "fitting %s: %d frames at %dx%d, intrinsics %s",
            seq.name,
            len(seq),
            seq.image_size[1],
            seq.image_size[0],
            f"estimated from a {fov:g} deg field of view" if estimate else "given",
        )
        super().setup(device)
        self.seq = seq.to(device)
        self.metric = "abs_rel" if seq.depth is not None else "photometric"
        if self.pose_init_steps:
            rotation = align_rotations(self.seq.frames, self.intrinsics().detach(), self.pose_init_steps)
            with torch.no_grad():
                self.path.rotation.copy_(rotation)
            turn = rotation.norm(dim=-1).rad2deg()
            log.info("consecutive frames aligned: they turn %.1f deg (median), %.1f (max)", turn.median(), turn.max())

    def plan(self, total_steps: int) -> None:
        """Each level's first step from its ``level_start`` fraction of the run."""
        self.level_steps = [round(f * total_steps) for f in self.level_start]
        self.parallax_step = round(self.parallax_from * total_steps)

    def param_groups(self):
        return {
            "depth": list(self.depth.parameters()),
            "pose": list(self.path.parameters()),
            "intrinsics": list(self.intrinsics.parameters()),
            "exposure": [] if self.exposure is None else list(self.exposure.parameters()),
        }

    # ------------------------------------------------------------------ loss
    def sources(self, targets: Tensor) -> list[Tensor]:
        """(b,) target indices -> [(b,)] their sources: once :meth:`pick_sources_by_parallax` has run, one per column
        of its table; before, one per window offset o: t + o, or t - o outside the video."""
        if self.source_table is not None:
            return list(self.source_table[targets].T)
        T = len(self.seq)
        out = []
        for o in self.window.sources:
            s = targets + o
            out.append(torch.where((s < 0) | (s >= T), (targets - o).clamp(0, T - 1), s))
        return out

    def source_frames(self, sources: list[Tensor], targets: Tensor) -> list[Tensor]:
        """[(b, 3, H, W)] the frames of each list of (b,) source indices, in the targets' exposure when it is fitted."""
        frames = [self.seq.frames[s] for s in sources]
        if self.exposure is None:
            return frames
        return [self.exposure(f, s, targets) for f, s in zip(frames, sources)]

    def loss(self, step: int) -> dict[str, Tensor]:
        """The weighted :class:`ViewSynthesisLoss` terms of ``batch_size`` target frames."""
        generator = self.step_generator(step)
        T = len(self.seq)
        if self.parallax_goals is not None and step >= self.parallax_step and (
            self.source_table is None or step % PARALLAX_EVERY == 0
        ):
            self.pick_sources_by_parallax()
        targets = torch.randperm(T, generator=generator)[: self.batch_size or T].to(self.device)
        trained = sum(step >= s for s in self.level_steps)
        log_depth = self.depth(targets, trained)
        poses = self.path()
        K = self.intrinsics()
        sources = self.sources(targets)
        batch = Batch(
            self.seq.frames[targets],
            self.source_frames(sources, targets),
            K.expand(len(targets), 3, 3),
            torch.zeros(len(targets), dtype=torch.bool),
            generator,
        )
        relative = [poses[s] @ invert_rigid(poses[targets]) for s in sources]  # src_from_dst
        terms, _ = self.objective(batch, [self.disparity(x) for x in log_depth], relative, self)
        return terms

    @torch.no_grad()
    def pick_sources_by_parallax(self) -> None:
        """Re-pick every target's sources from the current camera path, focal length and mean depths."""
        index = torch.arange(len(self.seq), device=self.device)
        mean_depth = self.depth(index, self.num_levels)[-1].mean((1, 2, 3)).exp()  # geometric mean, coarsest scale
        parallax = baseline_parallax(self.path(), float(self.intrinsics()[0, 0]), mean_depth)
        self.source_table = parallax_sources(parallax, self.parallax_goals)

    def disparity(self, log_depth: Tensor) -> Tensor:
        """Log depth -> the [0, 1] disparity :class:`ViewSynthesisLoss` reads (linear in inverse depth, 0 at
        ``max_depth``, 1 at ``min_depth``), the depth clamped into that range."""
        lo, hi = self.depth_range
        inverse = (-log_depth).exp().clamp(1 / hi, 1 / lo)
        return (inverse - 1 / hi) / (1 / lo - 1 / hi)

    # ------------------------------------------------------------------ results
    @torch.no_grad()
    def depth_maps(self) -> Tensor:
        """(T, H, W) the fitted depth of every frame [gauge units]."""
        index = torch.arange(len(self.seq), device=self.device)
        return self.depth(index, self.num_levels)[0][:, 0].exp().clamp(*self.depth_range)

    @torch.no_grad()
    def metres_per_unit(self, depth: Tensor) -> float | None:
        """The scale that puts the fit in metres, from the length the data source knows (``data.camera_height`` or
        ``data.baseline_m``, :mod:`~tasks.depth_from_video.metric_scale`); None without one."""
        if self.data.camera_height is not None:
            return scale_from_camera_height(depth, self.intrinsics(), self.data.camera_height, self.seed)
        if self.data.baseline_m is not None:
            return scale_from_baseline(self.path(), self.data.baseline_m)
        return None

    def evaluate(self) -> dict[str, float]:
        """Depth metrics against ground truth (with the constant baseline), the photometric error of every frame,
        the ATE (with ground-truth poses) and the focal length (with its truth when known). With a known length
        (``data.camera_height`` / ``data.baseline_m``) also ``metric_scale`` [m per fit unit] and, against ground
        truth, the metrics of the depth in metres without per-image scaling (``abs_rel_metric``, ``a1_metric``)
        and ``scale_ratio``, the median ratio of that depth to the truth (1 = the scale is right)."""
        depth = self.depth_maps()
        metrics = self.eval_protocol.depth_metrics([(self.seq, depth)]) if self.seq.depth is not None else {}
        scale = self.metres_per_unit(depth)
        if scale is not None:
            metrics["metric_scale"] = scale
            if self.seq.depth is not None:
                metres = self.metric_protocol.depth_metrics([(self.seq, depth * scale)])
                metrics["abs_rel_metric"], metrics["a1_metric"] = metres["abs_rel"], metres["a1"]
                metrics["scale_ratio"] = self.metric_protocol.median_ratio([(self.seq, depth * scale)])
        metrics["photometric"] = self.photometric(depth)
        if self.seq.cam_from_world is not None and len(self.seq) >= 3:
            truth = self.seq.cam_from_world @ torch.linalg.inv(self.seq.cam_from_world[0])
            metrics["ate"] = absolute_trajectory_error(self.path(), truth)
        K = self.intrinsics()
        metrics["focal_px"] = float(K[0, 0])
        if self.intrinsics_known:
            truth = math.sqrt(float(self.seq.K[0, 0] * self.seq.K[1, 1]))
            metrics["focal_true_px"] = truth
            metrics["focal_rel_error"] = abs(float(K[0, 0]) - truth) / truth
        return metrics

    def photometric(self, depth: Tensor) -> float:
        """The mean SSIM + L1 reprojection error of every frame against its window (minimum over the sources, no
        auto-mask or smoothness), at full resolution."""
        seq, poses, K = self.seq, self.path(), self.intrinsics()
        errors = []
        for targets in torch.split(torch.arange(len(seq), device=self.device), 16):
            sources = self.sources(targets)
            relative = [poses[s] @ invert_rigid(poses[targets]) for s in sources]
            _, err = self.objective.reprojection_errors(
                seq.frames[targets],
                self.source_frames(sources, targets),
                depth[targets, None],
                relative,
                K.expand(len(targets), 3, 3),
            )
            errors.append(self.objective.reduce_sources(err).mean((1, 2, 3)))
        return torch.cat(errors).mean().item()

    @torch.no_grad()
    def visuals(self, logger: Logger, step: int) -> None:
        """Up to 4 frames spread over the video with their fitted depth (and the truth)."""
        every = max(1, len(self.seq) // 4)
        depth = self.depth_maps()[::every][:4]
        truth = None if self.seq.depth is None else self.seq.depth[::every][:4]
        log_test_panels(logger, step, self.seq.frames[::every][:4], depth, truth, self.eval_protocol)

    @torch.no_grad()
    def save(self, out_dir: Path) -> None:
        """Depth maps, the depth video, ``trajectory.txt`` (TUM), ``intrinsics.json`` and ``points.ply``
        (:func:`artifacts.write_fit_artifacts`)."""
        K, depth, poses = self.intrinsics(), self.depth_maps(), self.path()
        scale = self.metres_per_unit(depth)
        if scale is not None:  # in metres
            depth, poses = depth * scale, poses.clone()
            poses[:, :3, 3] *= scale
        camera = PinholeCamera(K[None].expand(len(self.seq), 3, 3), poses, self.seq.image_size)
        write_fit_artifacts(out_dir, self.seq, depth, camera, self.intrinsics.estimate, metres=scale is not None)

    def summary(self, metrics):
        focal = f"focal={metrics['focal_px']:.1f} px"
        if "focal_true_px" in metrics:
            focal += f" (truth {metrics['focal_true_px']:.1f})"
        if "metric_scale" in metrics:
            focal += f", in metres (x{metrics['metric_scale']:.4g}"
            if "abs_rel_metric" in metrics:
                focal += f": abs_rel {metrics['abs_rel_metric']:.4f} unscaled, depth/truth {metrics['scale_ratio']:.3f}"
            focal += ")"
        if "abs_rel" not in metrics:
            return f"photometric={metrics['photometric']:.4f} (no ground-truth depth), {focal}"
        text = (
            f"abs_rel={metrics['abs_rel']:.4f} (constant-depth baseline {metrics['baseline_abs_rel']:.4f}), "
            f"a1={metrics['a1']:.3f}, {focal}"
        )
        return text + (f", ATE={metrics['ate']:.4f}" if "ate" in metrics else "")
