"""A damped planar pendulum (a point bob on a massless rod), batched over N independent pendulums.

Conventions: +y up, gravity ``-g`` along y. Each pendulum swings in the x-y plane through its pivot; the angle θ
is measured from the downward vertical, positive counter-clockwise about +z, so the bob is at
``pivot + L (sin θ, -cos θ, 0)``. The equation of motion is ``θ'' = -(g / L) sin θ - b θ'`` with the damping
rate b [1/s] (a torque ``-m L² b θ'``; the mass drops out, so it is not a parameter).

Integration: Strang splitting of the damping, solved exactly (``θ' ← θ' exp(-b h/2)``), around a
Störmer-Verlet (leapfrog) step of the conservative part (Hairer, Lubich & Wanner, "Geometric Numerical
Integration", 2006). Without damping the scheme is symplectic: the energy oscillates within O(h²) and does not
drift. The state is the bob's position and velocity; ``step`` reads θ and θ' back from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from runner.physics.base import PENDULUM, PhysParams, State, Trajectory, check_rollout_args


@dataclass(frozen=True)
class PendulumParams(PhysParams):
    """The model of N pendulums.

    Attributes:
        length: (N,) rod length L [m], > 0.
        damping: (N,) damping rate b [1/s], ≥ 0: the amplitude of small swings decays as ``exp(-b t / 2)``.
        pivot: (N, 3) pivot positions in the world [m].
    """

    length: Tensor
    damping: Tensor
    pivot: Tensor

    def __post_init__(self) -> None:
        n = self.length.shape
        if self.length.dim() != 1 or self.damping.shape != n or self.pivot.shape != (*n, 3):
            raise ValueError("PendulumParams: length and damping must have shape (N,) and pivot (N, 3); got "
                             f"{tuple(n)}, {tuple(self.damping.shape)}, {tuple(self.pivot.shape)}")
        if bool((self.length <= 0).any()):
            raise ValueError(f"PendulumParams: length [m] must be > 0, got {self.length.tolist()}")
        if bool((self.damping < 0).any()):
            raise ValueError(f"PendulumParams: damping [1/s] must be >= 0, got {self.damping.tolist()}")


class Pendulum:
    """Damped pendulums integrated with a symplectic splitting scheme (see module doc).

    Args:
        substeps: integration substeps per frame (≥ 1); a finer ground truth uses more.
        gravity: gravitational acceleration g [m/s²] > 0, acting along -y.
    """

    capabilities = frozenset({PENDULUM})

    def __init__(self, substeps: int = 4, gravity: float = 9.81):
        if substeps < 1:
            raise ValueError(f"Pendulum: substeps must be >= 1, got {substeps}")
        if not gravity > 0:
            raise ValueError(f"Pendulum: gravity [m/s²] must be > 0, got {gravity}")
        self.substeps = substeps
        self.gravity = gravity

    @staticmethod
    def initial_state(params: PendulumParams, angle: Tensor | float, ang_rate: Tensor | float = 0.0) -> State:
        """The bob's state from the angle θ [rad] and its rate θ' [rad/s], scalars or (N,) tensors.

        Differentiable in ``params.length``, ``params.pivot``, ``angle`` and ``ang_rate``.
        """
        like = params.length
        angle = torch.as_tensor(angle, dtype=like.dtype, device=like.device).expand_as(like)
        ang_rate = torch.as_tensor(ang_rate, dtype=like.dtype, device=like.device).expand_as(like)
        return State(pos=_bob_position(params, angle), vel=_bob_velocity(params, angle, ang_rate))

    @staticmethod
    def angle(params: PendulumParams, state: State) -> tuple[Tensor, Tensor]:
        """(N,) angle θ [rad] in (-π, π] and (N,) rate θ' [rad/s] of the bob's state."""
        r = state.pos - params.pivot
        angle = torch.atan2(r[:, 0], -r[:, 1])
        ang_rate = (r[:, 0] * state.vel[:, 1] - r[:, 1] * state.vel[:, 0]) / (r[:, 0] ** 2 + r[:, 1] ** 2)
        return angle, ang_rate

    def step(self, params: PendulumParams, state: State, dt: float) -> State:
        """Advance one frame of ``dt`` [s] in ``substeps`` substeps.

        Args:
            params: N pendulums.
            state: bob positions (N, 3) [m] and velocities (N, 3) [m/s]; only their angle about the pivot and
                angular rate are read, and the new bob sits at ``params.length`` from the pivot, so build the
                initial state from the same params with :meth:`initial_state`.
            dt: frame length [s], > 0.
        """
        check_rollout_args(1, dt)
        if state.pos.shape != params.pivot.shape:
            raise ValueError(f"Pendulum.step: state.pos must be {tuple(params.pivot.shape)} for "
                             f"{params.pivot.shape[0]} pendulums, got {tuple(state.pos.shape)}")
        angle, ang_rate = self.angle(params, state)
        h = dt / self.substeps
        stiffness = self.gravity / params.length  # g / L [1/s²]
        half_decay = torch.exp(-0.5 * h * params.damping)
        for _ in range(self.substeps):
            ang_rate = ang_rate * half_decay
            ang_rate = ang_rate - 0.5 * h * stiffness * torch.sin(angle)
            angle = angle + h * ang_rate
            ang_rate = ang_rate - 0.5 * h * stiffness * torch.sin(angle)
            ang_rate = ang_rate * half_decay
        return State(pos=_bob_position(params, angle), vel=_bob_velocity(params, angle, ang_rate))

    def rollout(self, params: PendulumParams, state0: State, steps: int, dt: float) -> Trajectory:
        """``steps`` frames of ``dt`` [s]; returns pos and vel (steps + 1, N, 3) and time (steps + 1,) [s]."""
        check_rollout_args(steps, dt)
        states = [state0]
        for _ in range(steps):
            states.append(self.step(params, states[-1], dt))
        return Trajectory.from_states(states, dt)

    def small_angle_period(self, params: PendulumParams) -> Tensor:
        """(N,) period 2π √(L / g) [s] of small undamped swings."""
        return 2 * math.pi * torch.sqrt(params.length / self.gravity)


def _bob_position(params: PendulumParams, angle: Tensor) -> Tensor:
    offset = torch.stack([torch.sin(angle), -torch.cos(angle), torch.zeros_like(angle)], dim=-1)
    return params.pivot + params.length[:, None] * offset


def _bob_velocity(params: PendulumParams, angle: Tensor, ang_rate: Tensor) -> Tensor:
    tangent = torch.stack([torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)], dim=-1)
    return (params.length * ang_rate)[:, None] * tangent
