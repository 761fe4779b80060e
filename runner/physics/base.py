"""The physics-engine interface shared by every backend.

A backend keeps the *model* (:class:`PhysParams`: masses, coefficients; what an experiment recovers)
apart from the time-varying :class:`State`. ``step`` returns a new state and never writes in place, so
that autograd can differentiate a whole rollout with respect to the parameters and the initial state.
Units are SI throughout: [m], [s], [kg], [N/m], [N s/m].
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import ClassVar, Protocol

import torch
from torch import Tensor


@dataclass(frozen=True)
class State:
    """The state of a system of N bodies or particles at one instant.

    Attributes:
        pos: (N, 3) positions [m] (for a pendulum, the bob; for rigid bodies, the centre of mass).
        vel: (N, 3) velocities [m/s].
        quat: (N, 4) orientations as unit quaternions (w, x, y, z), or None for particles.
        ang_vel: (N, 3) angular velocities in the world frame [rad/s], or None for particles.
    """

    pos: Tensor
    vel: Tensor
    quat: Tensor | None = None
    ang_vel: Tensor | None = None

    def replace(self, **changes) -> State:
        return replace(self, **changes)


# A backend's parameters are a frozen dataclass of tensors; each backend defines its own subclass.
@dataclass(frozen=True)
class PhysParams:
    def as_dict(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Trajectory:
    """A rollout: the initial state followed by one state per step.

    Attributes:
        pos: (T + 1, N, 3) positions [m].
        vel: (T + 1, N, 3) velocities [m/s].
        quat: (T + 1, N, 4) orientations, or None.
        time: (T + 1,) time stamps [s].
    """

    pos: Tensor
    vel: Tensor
    quat: Tensor | None
    time: Tensor

    @staticmethod
    def from_states(states: list[State], dt: float) -> Trajectory:
        quat = torch.stack([s.quat for s in states]) if states[0].quat is not None else None
        time = torch.arange(len(states), dtype=states[0].pos.dtype, device=states[0].pos.device) * dt
        return Trajectory(
            pos=torch.stack([s.pos for s in states]),
            vel=torch.stack([s.vel for s in states]),
            quat=quat,
            time=time,
        )


# What an engine simulates, named by the models a scene can ask for: damped springs between particles,
# rigid bodies with ground contact and friction, pendulums.
SPRINGS, RIGID_CONTACT, PENDULUM = "springs", "rigid_contact", "pendulum"


class PhysicsEngine(Protocol):
    """A differentiable simulator of the models it names in ``capabilities``.

    A scene asks for one capability (e.g. :data:`SPRINGS`); any engine that declares it serves the scene,
    whoever wrote it (``physics=mass_spring`` or ``physics=warp_springs`` for the cloth).
    """

    capabilities: ClassVar[frozenset[str]]

    def step(self, params: PhysParams, state: State, dt: float) -> State:
        """Advance by ``dt`` [s]; returns a new State and never writes in place."""
        ...

    def rollout(self, params: PhysParams, state0: State, steps: int, dt: float) -> Trajectory:
        """``steps`` frames of length ``dt`` [s] each (a backend may take substeps inside a frame)."""
        ...


def capabilities_of(engine) -> frozenset[str]:
    """The capabilities an engine (instance or class) declares; none for an object that declares none."""
    return frozenset(getattr(engine, "capabilities", ()))


def check_engine_args(engine: str, substeps: int, gravity: float) -> None:
    """Raise a ValueError naming ``engine`` unless ``substeps`` ≥ 1 and ``gravity`` [m/s²] along -y is ≥ 0."""
    if substeps < 1:
        raise ValueError(f"{engine}: substeps must be >= 1, got {substeps}")
    if gravity < 0:
        raise ValueError(f"{engine}: gravity [m/s²] is a magnitude along -y and must be >= 0, got {gravity}")


def check_rollout_args(steps: int, dt: float) -> None:
    """Raise a ValueError unless ``steps`` ≥ 1 and the frame length ``dt`` [s] is > 0 (shared by backends)."""
    if not dt > 0:
        raise ValueError(f"dt [s] must be > 0, got {dt}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
