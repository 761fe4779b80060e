"""A damped pendulum filmed from the front: recover its length [m] and damping rate [1/s].

The bob swings in the x-y plane below a known pivot under known gravity (:class:`runner.physics.pendulum.Pendulum`,
``θ'' = -(g / L) sin θ - b θ'``). It is drawn as a splat, and the rod as a few thin splats between pivot and bob.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from runner.errors import ConfigError
from runner.physics.base import PENDULUM
from runner.physics.pendulum import PendulumParams
from tasks.physical_params.scene import FilmedScene


def pendulum_model(values: dict[str, Tensor], pivot: Tensor) -> PendulumParams:
    """A batch of one pendulum hung from ``pivot`` (1, 3) [m].

    Args:
        values: the estimated ``length`` [m] and ``damping`` rate [1/s], () tensors.
    """
    return PendulumParams(
        length=values["length"].reshape(1).to(torch.float32),
        damping=values["damping"].reshape(1).to(torch.float32),
        pivot=pivot,
    )


@dataclass(kw_only=True, eq=False)
class PendulumScene(FilmedScene):
    """Args (beyond :class:`FilmedScene`'s):
    pivot: (3,) pivot position [m].
    angle_deg: initial angle from the downward vertical [deg] (released at rest).
    bob_radius: [m]; rod_points: thin splats along the rod (≥ 0), of radius ``rod_radius`` [m].
    color: (3,) RGB of the bob in [0, 1]; the rod is grey.
    """

    recoverable = ("length", "damping")
    needs = PENDULUM

    pivot: Sequence[float]
    angle_deg: float
    bob_radius: float
    rod_points: int
    rod_radius: float
    color: Sequence[float]

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.bob_radius > 0 and self.rod_radius > 0 and self.rod_points >= 0):
            raise ConfigError("scene: bob_radius and rod_radius [m] must be > 0 and rod_points >= 0")
        self.pivot = torch.tensor(list(self.pivot), dtype=torch.float32)
        self.angle = math.radians(self.angle_deg)  # [rad]
        self.rod_points = int(self.rod_points)
        self.color = torch.tensor(list(self.color), dtype=torch.float32)

    def model(self, values: dict[str, Tensor]) -> PendulumParams:
        return pendulum_model(values, self.pivot[None])

    def simulate(self, engine, values, frames):
        params = self.model(values)
        state = engine.initial_state(params, self.angle)
        bob = engine.rollout(params, state, frames - 1, self.dt).pos  # (frames, 1, 3)
        along = torch.arange(1, self.rod_points + 1, dtype=torch.float32) / (self.rod_points + 1)
        rod = self.pivot + along[None, :, None] * (bob - self.pivot)  # (frames, rod_points, 3)
        return torch.cat([bob, rod], dim=1)

    def point_style(self) -> tuple[Tensor, Tensor]:
        radii = torch.tensor([self.bob_radius] + [self.rod_radius] * self.rod_points)
        colors = torch.cat([self.color[None], torch.full((self.rod_points, 3), 0.6)])
        return radii, colors

    def report(self, values, engine):
        """The small-angle period 2π √(L / g) [s] of the estimate."""
        return {"period": float(engine.small_angle_period(self.model(values))[0])}
