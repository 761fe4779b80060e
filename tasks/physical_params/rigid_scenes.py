"""Scenes of one rigid body on or above the ground plane y = 0: projectile, push, bouncing ball, sliding block.

Each recovers what gradSim's rigid-body experiments recover (Jatavallabhula et al., ICLR 2021, Sec. 5.1) from
a fixed side view (the camera looks along -z at the x-y plane of the motion): a launch velocity, a mass from a
known impulse, a coefficient of restitution, a friction coefficient. The body is simulated by
:class:`runner.physics.rigid.RigidBodies` and drawn as splats: a sphere as one splat of its radius, a box as
eight overlapping splats at the centres of its octants (the body does not spin in these scenes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from runner.errors import ConfigError
from runner.physics.base import RIGID_CONTACT, PhysicsEngine
from runner.physics.rigid import RigidParams
from tasks.physical_params.scene import FilmedScene

_OCTANTS = torch.tensor([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])


@dataclass(kw_only=True, eq=False)
class RigidScene(FilmedScene):
    """One sphere or cube filmed from the side (shared by the rigid scenes).

    Args (beyond :class:`FilmedScene`'s):
        shape: ``sphere`` or ``box`` (a cube).
        size: the sphere's radius or the cube's half side [m].
        color: (3,) RGB in [0, 1]; a box's octants alternate between it and a darker shade (visible texture).
        position: (3,) initial centre [m]; a body resting on the ground has y = size.
    """

    needs = RIGID_CONTACT

    shape: str
    size: float
    color: Sequence[float]
    position: Sequence[float]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shape not in ("sphere", "box"):
            raise ConfigError(f"scene.shape must be sphere or box, got {self.shape!r}")
        if not self.size > 0:
            raise ConfigError(f"scene.size [m] must be > 0, got {self.size}")
        self.size = float(self.size)
        self.color = torch.tensor(list(self.color), dtype=torch.float32)
        self.position = torch.tensor(list(self.position), dtype=torch.float32)

    def point_style(self) -> tuple[Tensor, Tensor]:
        if self.shape == "sphere":
            return torch.tensor([self.size]), self.color[None]
        shade = torch.tensor([1.0, 0.55, 0.55, 1.0, 0.55, 1.0, 1.0, 0.55])[:, None]  # a 3D checker of octants
        return torch.full((8,), 0.62 * self.size), self.color[None] * shade

    def rollout(
        self,
        engine: PhysicsEngine,
        frames: int,
        velocity: Tensor,
        mass: Tensor | float,
        restitution: Tensor | float,
        friction: Tensor | float,
        impulse: Tensor | None = None,
    ) -> Tensor:
        """Simulate the body and return the (frames, P, 3) positions of its splats [m].

        Args:
            velocity: (3,) initial velocity [m/s].
            mass: [kg]; restitution in [0, 1]; friction coefficient ≥ 0 (tensors or plain numbers).
            impulse: (3,) impulse [N s] applied at the start of frame 0, or None.
        """

        def vec(x) -> Tensor:
            return torch.as_tensor(x, dtype=torch.float32).reshape(1)

        params = RigidParams(
            mass=vec(mass),
            restitution=vec(restitution),
            friction=vec(friction),
            drag=torch.zeros(1),
            half_extents=torch.full((1, 3), self.size),
            is_sphere=torch.tensor([self.shape == "sphere"]),
            impulse=None if impulse is None else impulse.reshape(1, 1, 3).to(torch.float32),
        )
        state = engine.initial_state(self.position[None], velocity.reshape(1, 3).to(torch.float32))
        centre = engine.rollout(params, state, frames - 1, self.dt).pos  # (frames, 1, 3)
        if self.shape == "sphere":
            return centre
        return centre + (_OCTANTS * self.size)[None]


@dataclass(kw_only=True, eq=False)
class Projectile(RigidScene):
    """A ball thrown from a known point: recover its launch speed [m/s] and elevation angle [deg].

    Args (beyond :class:`RigidScene`'s): mass [kg], restitution and friction of the ground (known).
    """

    recoverable = ("speed", "angle")

    mass: float
    restitution: float
    friction: float

    def simulate(self, engine, values, frames):
        angle = torch.deg2rad(values["angle"])
        velocity = values["speed"] * torch.stack([torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)])
        return self.rollout(engine, frames, velocity, self.mass, self.restitution, self.friction)


@dataclass(kw_only=True, eq=False)
class Push(RigidScene):
    """A block at rest on the ground receives a known impulse and slides to a stop: recover its mass [kg].

    Args (beyond :class:`RigidScene`'s):
        impulse: (3,) the known impulse [N s] at the start of the video; the block starts at ``J / m`` [m/s].
        friction: the known Coulomb friction coefficient with the ground.
    """

    recoverable = ("mass",)

    impulse: Sequence[float]
    friction: float

    def __post_init__(self) -> None:
        super().__post_init__()
        self.impulse = torch.tensor(list(self.impulse), dtype=torch.float32)

    def simulate(self, engine, values, frames):
        return self.rollout(engine, frames, torch.zeros(3), values["mass"], 0.0, self.friction, self.impulse)


@dataclass(kw_only=True, eq=False)
class BouncingBall(RigidScene):
    """A ball dropped with a known velocity bounces on the ground: recover its coefficient of restitution.

    Args (beyond :class:`RigidScene`'s): velocity (3,) [m/s], mass [kg] and ground friction (known).
    """

    recoverable = ("restitution",)

    velocity: Sequence[float]
    mass: float
    friction: float

    def __post_init__(self) -> None:
        super().__post_init__()
        self.velocity = torch.tensor(list(self.velocity), dtype=torch.float32)

    def simulate(self, engine, values, frames):
        return self.rollout(engine, frames, self.velocity, self.mass, values["restitution"], self.friction)


@dataclass(kw_only=True, eq=False)
class SlidingBlock(RigidScene):
    """A block launched along the ground with a known velocity slows to a stop: recover the friction coefficient.

    Args (beyond :class:`RigidScene`'s): velocity (3,) [m/s] along the ground and mass [kg] (known).
    """

    recoverable = ("friction",)

    velocity: Sequence[float]
    mass: float

    def __post_init__(self) -> None:
        super().__post_init__()
        self.velocity = torch.tensor(list(self.velocity), dtype=torch.float32)
        if abs(float(self.velocity[1])) > 0 or abs(self.position[1].item() - self.size) > 1e-6:
            raise ConfigError(
                "scene sliding_block: the block must start on the ground (position y = size) "
                "with a horizontal velocity (velocity y = 0)"
            )

    def simulate(self, engine, values, frames):
        return self.rollout(engine, frames, self.velocity, self.mass, 0.0, values["friction"])
