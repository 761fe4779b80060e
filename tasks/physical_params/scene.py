"""What every scene of ``physical_params`` provides: parameters, a simulation, and what is observed of it.

A :class:`Scene` is a small physical experiment; a :class:`FilmedScene` is one filmed by a fixed camera
(gradSim, Jatavallabhula et al., ICLR 2021):
some bodies or particles, the physical parameters to recover (:class:`ParamSpec`), the known ones, and how
its points look. :meth:`Scene.simulate` rolls the system out with a physics engine for given parameter
values and returns the world positions of the points that are drawn and tracked, one row per video frame;
:meth:`Scene.observe` turns those positions into what is compared with the observations: pixels (splats
rendered by a differentiable renderer), 2D tracks (pixel coordinates) or 3D tracks (world positions). A scene
with real recordings (:mod:`tasks.physical_params.real`) brings its own observations instead.

Conventions: world frame +y up, ground plane y = 0 where a scene has one, SI units; OpenCV cameras
(:mod:`runner.geometry.cameras`); images NHWC in [0, 1].
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import Tensor

from runner.errors import ConfigError
from runner.geometry.cameras import PinholeCamera
from runner.physics.base import capabilities_of
from runner.render.splat import PointCloud
from tasks.physical_params.parameters import ParamSpec, specs_from_config

Observation = Literal["pixels", "tracks2d", "tracks3d"]
OBSERVATIONS = ("pixels", "tracks2d", "tracks3d")


@dataclass(kw_only=True, eq=False)
class Scene(ABC):
    """A physical experiment whose parameters are recovered from observations of it.

    Scenes are keyword-only dataclasses: Hydra passes the keys of ``configs/scene/<name>.yaml`` as fields, each
    subclass declares only the fields it adds, and ``__post_init__`` checks them (base class first) and turns
    config lists the scene computes with into float32 tensors.

    Args:
        params: the recovered parameters, ``{name: {low, high, truth, space, init, unit}}`` (see
            :class:`ParamSpec`); exactly the scene's :attr:`recoverable` ones.
        frames: frames T (≥ 2) of the observed motion; frame 0 shows the initial state.
        fps: frame rate [1/s]; the engine steps one frame of ``1 / fps`` [s] at a time.
    """

    recoverable: ClassVar[tuple[str, ...]] = ()  # the parameters this scene recovers
    needs: ClassVar[str]  # the engine capability it simulates with (runner.physics.base: SPRINGS, ...)

    params: dict[str, dict]
    frames: int
    fps: float
    specs: dict[str, ParamSpec] = field(init=False, repr=False)  # ``params`` checked, by name

    def __post_init__(self) -> None:
        if self.frames < 2:
            raise ConfigError(f"scene.frames must be >= 2, got {self.frames}")
        if not self.fps > 0:
            raise ConfigError(f"scene.fps must be > 0, got {self.fps}")
        self.specs = specs_from_config(self.params)
        if sorted(self.specs) != sorted(self.recoverable):
            raise ConfigError(
                f"scene.params: {type(self).__name__} recovers {sorted(self.recoverable)}; "
                f"give exactly those, got {sorted(self.specs) or 'none'}"
            )
        self.frames, self.fps = int(self.frames), float(self.fps)

    @property
    def dt(self) -> float:
        """Frame length [s]."""
        return 1.0 / self.fps

    def check_engine(self, engine: object) -> None:
        """Raise a ConfigError unless ``engine`` declares the capability this scene :attr:`needs`."""
        if self.needs not in capabilities_of(engine):
            raise ConfigError(
                f"scene {type(self).__name__} needs a physics engine that simulates {self.needs}; "
                f"{type(engine).__name__} simulates {', '.join(sorted(capabilities_of(engine))) or 'nothing declared'}"
            )

    @abstractmethod
    def simulate(self, engine, values: dict[str, Tensor], frames: int) -> Tensor:
        """Roll the scene out for its first ``frames`` frames.

        Args:
            engine: the physics engine (:meth:`check_engine` passed).
            values: every recovered parameter by name, () tensors.
            frames: number of frames T' ≤ T to simulate (frame 0 is the initial state).

        Returns:
            (T', P, 3) world positions [m] of the scene's P points (drawn as splats, tracked as points).
        """

    @abstractmethod
    def observe(self, renderer, positions: Tensor, kind: Observation, supersample: int = 1) -> Tensor:
        """What is observed of the simulated ``positions`` (T', P, 3): frames (T', H, W, 3) or tracks (T', P, D)."""

    def recorded(self) -> Tensor | None:
        """Observations the scene brings with it (real recordings), or None to generate them from its truth."""
        return None

    def report(self, values: dict[str, Tensor], engine) -> dict[str, float]:
        """Scene-specific figures of an estimate beside the parameters (e.g. a pendulum's period)."""
        return {}

    def truth(self) -> dict[str, Tensor]:
        """The true values of the recovered parameters; a ConfigError if one is unknown."""
        missing = [n for n, s in self.specs.items() if s.truth is None]
        if missing:
            raise ConfigError(
                f"scene.params.{missing[0]}.truth is null: generating a ground truth video needs "
                "every truth (or give your own video with data=scene_video data.path=PATH)"
            )
        return {n: torch.tensor(s.truth, dtype=torch.float32) for n, s in self.specs.items()}


@dataclass(kw_only=True, eq=False)
class FilmedScene(Scene):
    """A scene filmed by a fixed camera; its points are drawn as splats.

    Args (beyond :class:`Scene`'s):
        image_size: side of the square video frames [px].
        eye: camera centre (3,) [m], world frame.
        at: the point the camera looks at (3,) [m]; the world +y axis appears upwards.
        fov_deg: vertical field of view [deg].
    """

    image_size: int
    eye: Sequence[float]
    at: Sequence[float]
    fov_deg: float

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_size < 8:
            raise ConfigError(f"scene.image_size must be >= 8 pixels, got {self.image_size}")
        if not 0 < self.fov_deg < 180:
            raise ConfigError(f"scene.fov_deg must be in (0, 180), got {self.fov_deg}")
        self.image_size = int(self.image_size)
        self.eye, self.at = tuple(map(float, self.eye)), tuple(map(float, self.at))
        self.fov_deg = float(self.fov_deg)

    @abstractmethod
    def point_style(self) -> tuple[Tensor, Tensor]:
        """(P,) splat radii [m] and (P, 3) colours in [0, 1] of the scene's points."""

    def camera(self, batch: int, image_size: int | None = None) -> PinholeCamera:
        """The scene's fixed camera, repeated ``batch`` times, for square images of ``image_size`` px."""
        size = image_size or self.image_size
        K = PinholeCamera.intrinsics_from_fov(self.fov_deg, (size, size), batch=batch)
        eye = torch.tensor(self.eye).expand(batch, 3)
        at = torch.tensor(self.at).expand(batch, 3)
        return PinholeCamera(K, PinholeCamera.look_at(eye, at), (size, size))

    def render(self, renderer, positions: Tensor, supersample: int = 1) -> Tensor:
        """(T, P, 3) world positions -> (T, H, W, 3) frames, rendered ``supersample``² times denser and box-filtered."""
        frames = positions.shape[0]
        size = self.image_size * supersample
        radii, colors = self.point_style()
        cloud = PointCloud(positions, radii.expand(frames, -1), colors.expand(frames, -1, -1))
        rgb = renderer(cloud, self.camera(frames, size)).rgb
        if supersample > 1:
            rgb = torch.nn.functional.avg_pool2d(rgb.permute(0, 3, 1, 2), supersample).permute(0, 2, 3, 1)
        return rgb

    def observe(self, renderer, positions: Tensor, kind: Observation, supersample: int = 1) -> Tensor:
        """What the camera (or a tracker) sees of the points.

        Returns:
            ``pixels``: (T, H, W, 3) frames; ``tracks2d``: (T, P, 2) pixel coordinates (u, v);
            ``tracks3d``: (T, P, 3) world positions [m].
        """
        if kind == "pixels":
            return self.render(renderer, positions, supersample)
        if kind == "tracks2d":
            pix, _ = self.camera(positions.shape[0]).project(positions)
            return pix
        if kind == "tracks3d":
            return positions
        raise ConfigError(f"task.observe must be one of {', '.join(OBSERVATIONS)}, got {kind!r}")
