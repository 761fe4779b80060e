"""``physical_params``: recover physical parameters from a video by differentiable simulation and rendering.

The gradSim recipe (Jatavallabhula et al., "gradSim: Differentiable simulation for system identification and
visuomotor control", ICLR 2021): roll the scene out with the current parameter estimates, render the
trajectory, compare the frames with the observed video, and follow the gradient of that pixel loss through
renderer and simulator back to the parameters.

Avoiding the "inverse crime": the ground-truth video is simulated by ``truth_physics`` (the same model with
more substeps per frame), rendered ``supersample``² times denser and box-filtered, and corrupted by Gaussian
pixel noise; the estimator simulates with ``physics`` and renders at the video's resolution.

Observations: ``pixels`` (the default), or tracks of the scene's points, ``tracks2d`` (pixel coordinates,
noise in px) or ``tracks3d`` (world positions, noise in m), or the user's own video (``data=scene_video``, pixels).
A scene with recorded observations of its own (the real pendulum) uses those.

Optimisation: each parameter has its own group (``optim.groups.<name>.lr``) in a well-conditioned variable
(:mod:`tasks.physical_params.parameters`). A horizon curriculum fits the first ``horizon_start`` frames
first and reaches the whole video after ``horizon_steps`` steps, so that a periodic or bouncing motion does
not trap a far initial guess in a local minimum of a long-horizon loss.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from runner.errors import ConfigError
from runner.logging import Logger
from runner.losses.weights import loss_weights
from runner.render.base import POINTS
from runner.task import Task, check_data_source
from runner.visuals import Panel, panel_row, write_video
from tasks.physical_params.losses import pyramid_mse, track_mse
from tasks.physical_params.metrics import parameter_metrics
from tasks.physical_params.parameters import Estimates
from tasks.physical_params.scene import OBSERVATIONS, Scene
from tasks.physical_params.video import SceneVideo


class PhysicalParams(Task):
    """Fit a scene's physical parameters to its observations.

    Args:
        scene: the filmed experiment and its parameters (prior, truth, initial guess).
        physics: the estimator's engine.
        truth_physics: the engine that makes the ground truth (same model, finer time step).
        renderer: a differentiable point renderer ``(PointCloud, PinholeCamera) -> Rendered``.
        observe: ``pixels``, ``tracks2d`` or ``tracks3d``.
        data: the user's own video (:class:`SceneVideo`, ``data=scene_video``) to fit instead of the video generated
            from the scene's true parameters, or None.
        supersample: ground-truth frames are rendered this many times denser per axis, then box-filtered (≥ 1).
        pixel_noise: std of the Gaussian noise added to ground-truth pixels (in [0, 1] units), ≥ 0.
        track_noise: std of the noise added to ground-truth tracks [px for tracks2d, m for tracks3d], ≥ 0.
        pyramid_weights: weight of each level of the pixel loss, finest first (see ``pyramid_mse``).
        losses: weight of each loss term, >= 0: ``pixels`` (the pyramid pixel loss, observe=pixels) and ``tracks``
            (the track loss, observe=tracks2d/tracks3d).
        horizon_start: frames fitted at step 0 (≥ 2), or None to fit the whole video from the start.
        horizon_steps: steps over which the fitted horizon grows linearly to the whole video.
        seed: seeds the noise and the random initial guesses.
    """

    metric = "rel_err"
    mode = "min"
    renders = POINTS  # the bodies and particles, as splats

    def __init__(
        self,
        scene: Scene,
        physics,
        truth_physics,
        renderer,
        losses: Mapping[str, float],
        observe: str = "pixels",
        data: SceneVideo | None = None,
        supersample: int = 2,
        pixel_noise: float = 0.02,
        track_noise: float = 0.0,
        pyramid_weights: Sequence[float] = (1.0, 4.0, 16.0, 64.0),
        horizon_start: int | None = 8,
        horizon_steps: int = 40,
        seed: int = 0,
    ):
        super().__init__(seed)
        if observe not in OBSERVATIONS:
            raise ConfigError(f"task.observe must be one of {', '.join(OBSERVATIONS)}, got {observe!r}")
        check_data_source(
            data, (SceneVideo,), "physical_params", "its scene's generated video, or yours with data=scene_video"
        )
        if data is not None and observe != "pixels":
            raise ConfigError(f"data=scene_video gives pixels; it needs task.observe=pixels, got {observe}")
        if supersample < 1 or pixel_noise < 0 or track_noise < 0:
            raise ConfigError("task.supersample must be >= 1 and task.pixel_noise, task.track_noise >= 0")
        if horizon_start is not None and (horizon_start < 2 or horizon_steps < 1):
            raise ConfigError("task.horizon_start must be >= 2 (or null) and task.horizon_steps >= 1")
        scene.check_engine(physics)
        scene.check_engine(truth_physics)
        self.scene, self.physics, self.truth_physics, self.renderer = scene, physics, truth_physics, renderer
        self.observe, self.data = observe, data
        self.supersample, self.pixel_noise, self.track_noise = int(supersample), pixel_noise, track_noise
        self.pyramid_weights = list(pyramid_weights)
        self.losses = loss_weights(losses, ("pixels", "tracks"))
        self.horizon_start, self.horizon_steps = horizon_start, int(horizon_steps)
        self.estimates = Estimates(scene.specs, seed)
        self.target: Tensor | None = None  # observations the loss compares with
        self.target_frames: Tensor | None = None  # (T, H, W, 3) frames to show beside the estimate, or None
        self._history: dict[int, dict[str, float]] = {}  # estimates per step, flushed to the logger by visuals

    # ------------------------------------------------------------------ data
    def setup(self, device: torch.device) -> None:
        """Make (or read) the observations. The simulators run on the CPU, so the task stays there."""
        super().setup(torch.device("cpu"))
        recorded = self.scene.recorded()
        if recorded is not None:
            self.target = recorded
            return
        if self.data is not None:
            self.target = self.data.frames(self.scene.frames, self.scene.image_size)
            self.target_frames = self.target
            return
        noise = torch.Generator().manual_seed(self.seed + 7919)
        with torch.no_grad():
            positions = self.scene.simulate(self.truth_physics, self.scene.truth(), self.scene.frames)
            frames = self.scene.render(self.renderer, positions, self.supersample)
            frames = (frames + self.pixel_noise * torch.randn(frames.shape, generator=noise)).clamp(0, 1)
            self.target_frames = frames
            if self.observe == "pixels":
                self.target = frames
            else:
                tracks = self.scene.observe(self.renderer, positions, self.observe)
                self.target = tracks + self.track_noise * torch.randn(tracks.shape, generator=noise)

    # ------------------------------------------------------------------ optimisation
    def param_groups(self) -> dict[str, list[Tensor]]:
        return {name: [raw] for name, raw in self.estimates.raw.items()}

    def horizon(self, step: int) -> int:
        """Frames fitted at ``step``: from ``horizon_start`` up to the whole video over ``horizon_steps``."""
        T = self.scene.frames
        if self.horizon_start is None:
            return T
        grow = (T - self.horizon_start) * min(1.0, step / self.horizon_steps)
        return min(T, self.horizon_start + math.ceil(grow))

    def predict(self, frames: int) -> Tensor:
        """The current estimate's observations of the first ``frames`` frames (differentiable)."""
        positions = self.scene.simulate(self.physics, self.estimates.values(), frames)
        return self.scene.observe(self.renderer, positions, self.observe)

    def loss(self, step: int) -> dict[str, Tensor]:
        values = self.estimates.values()
        self._history[step] = {name: float(v.detach()) for name, v in values.items()}
        pred = self.predict(self.horizon(step))
        target = self.target[: pred.shape[0]]
        # Keeps every estimate in the graph while the fitted frames do not depend on it yet (a bounce that
        # comes after the horizon): its gradient is then zero instead of missing.
        anchor = 0.0 * sum(raw.sum() for raw in self.estimates.raw.values())
        if pred.dim() == 4:  # frames (T, H, W, 3); tracks are (T, P, D)
            return {"pixels": self.losses["pixels"] * pyramid_mse(pred, target, self.pyramid_weights) + anchor}
        return {"tracks": self.losses["tracks"] * track_mse(pred, target) + anchor}

    # ------------------------------------------------------------------ results
    def current(self) -> dict[str, float]:
        return {name: float(v.detach()) for name, v in self.estimates.values().items()}

    def evaluate(self) -> dict[str, float]:
        metrics = parameter_metrics(self.scene.specs, self.current())
        metrics.update(self.scene.report(self.estimates.values(), self.physics))
        errors = [v for k, v in metrics.items() if k.startswith("rel_err_")]
        metrics["rel_err"] = max(errors) if errors else math.nan  # the worst of the parameters' and the scene's
        return metrics

    def summary(self, metrics: dict[str, float]) -> str:
        parts = [f"rel_err={metrics['rel_err']:.3g}"]
        for name, spec in self.scene.specs.items():
            truth = "" if spec.truth is None else f" (true {spec.truth:.4g})"
            parts.append(f"{name}={metrics[name]:.4g}{spec.unit and ' ' + spec.unit}{truth}")
        return ", ".join(parts)

    def visuals(self, logger: Logger, step: int) -> None:
        for logged_step in sorted(self._history):
            values = self._history[logged_step]
            logger.scalars({f"param/{n}": v for n, v in values.items()}, logged_step)
            logger.scalars(
                {f"param/{n}_true": s.truth for n, s in self.scene.specs.items() if s.truth is not None}, logged_step
            )
        self._history.clear()
        if self.target_frames is None:
            return
        estimate = self.estimate_frames()
        shown = torch.linspace(0, self.scene.frames - 1, 4).round().long()
        logger.images("frames/target|estimate", self.truth_vs_estimate(estimate, shown), step)
        # the logger shows 8 of these frames side by side: smaller, captions without times
        strip = self.truth_vs_estimate(estimate, torch.arange(self.scene.frames), min_height=128, times=False)
        logger.video("video/target|estimate", strip, step, fps=round(self.scene.fps))

    @torch.no_grad()
    def estimate_frames(self) -> Tensor:
        """(T, H, W, 3) frames of the current estimate, simulated and rendered at the video's resolution."""
        positions = self.scene.simulate(self.physics, self.estimates.values(), self.scene.frames)
        return self.scene.render(self.renderer, positions).clamp(0, 1)

    def truth_vs_estimate(self, estimate: Tensor, frames: Tensor, min_height: int = 256, times: bool = True) -> Tensor:
        """Labelled rows ``truth | estimate`` (:func:`runner.visuals.panel_row`, enlarged with nearest-neighbour
        to at least ``min_height`` px): the target frames beside the estimate's.

        Args:
            estimate: (T, H, W, 3) frames of the estimate (:meth:`estimate_frames`).
            frames: (N,) indices of the frames shown, one row each.
            times: put each frame's time into its captions.
        Returns:
            (N, H', W', 3) in [0, 1].
        """
        observed = "video" if self.data is not None else "truth"
        when = [f", t = {i / self.scene.fps:.2f} s" if times else "" for i in frames.tolist()]
        return panel_row(
            [
                Panel([observed + w for w in when], self.target_frames[frames].clamp(0, 1)),
                Panel(["estimate" + w for w in when], estimate[frames]),
            ],
            min_height=min_height,
        )

    def save(self, out_dir: Path) -> None:
        """``params.json`` (estimate, truth, initial guess, prior, relative error) and, when there are target
        frames, ``estimate.gif`` and ``estimate.mp4`` (:meth:`truth_vs_estimate` of every frame)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        metrics = self.evaluate()
        record = {}
        for name, spec in self.scene.specs.items():
            record[name] = {
                "estimate": metrics[name],
                "truth": spec.truth,
                "initial": self.estimates.initial[name],
                "prior": [spec.low, spec.high],
                "space": spec.space,
                "unit": spec.unit,
                "rel_err": metrics.get(f"rel_err_{name}"),
            }
        per_param = {key for name in record for key in (name, f"{name}_true", f"rel_err_{name}")}
        extra = {k: v for k, v in metrics.items() if k not in per_param}
        (out_dir / "params.json").write_text(json.dumps({"params": record, "metrics": extra}, indent=2))
        if self.target_frames is not None:
            frames = self.truth_vs_estimate(self.estimate_frames(), torch.arange(self.scene.frames))
            write_video(out_dir / "estimate", frames, self.scene.fps)
