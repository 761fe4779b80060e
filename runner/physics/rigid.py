"""Rigid spheres and boxes falling, bouncing and sliding on a ground plane, differentiable end to end.

Conventions: world frame with +y up, gravity ``-g`` along y (``g = 9.81 m/s²`` by default), the ground is the
plane y = 0 with normal +y. Bodies do not collide with each other; every body is one independent entry of the
batch, so N candidate scenes can be rolled out at once.

Integration. Between contact events each substep of length h uses the constant acceleration at its start
(gravity plus linear drag ``-c/m v``): ``x' = x + v h + a h²/2``, ``v' = v + a h``. Without drag this is the exact
parabola, so free flight has no discretisation error; with drag it is first order in h.

Contact: a time-of-impact (TOI) corrected impulse model, not a compliant (penalty) one. When a substep would
end below the ground, the impact time τ ∈ [0, h] is solved in closed form from the same parabola, the body
advances to τ, receives a restitution impulse ``v_n⁺ = -e v_n⁻`` and a Coulomb friction impulse bounded by
``μ (1 + e) |v_n⁻|`` (never larger than what stops the tangential motion), and flies for the rest of the
substep. This is the time-of-impact correction of DiffTaichi (Hu et al., "DiffTaichi: Differentiable
Programming for Physical Simulation", ICLR 2020): without it the bounce time snaps to the substep grid and
d(trajectory)/d(initial height or restitution) is wrong; with it the derivatives are those of the piecewise
parabola (the exact bouncing ball when there is no drag). A body touching the ground (gap ≤
``contact_tol``) with normal speed below what gravity adds in one substep is in resting contact: the ground
cancels the normal acceleration and Coulomb friction decelerates the tangential velocity by ``μ g`` (plus drag).
The deceleration is clamped so that it stops the body exactly, at the analytic distance ``v²/(2 (μ g + c/m |v|))``
inside the substep, and never reverses the velocity (no sign chatter); once stopped the body stays at rest.

Gradient behaviour and limits:
    * A bounce: positions after the impact are smooth in restitution, friction, drag, mass, size and the
      initial state, and their derivatives are exact for the model (the event time τ is differentiated, not
      frozen). Mass enters only through drag ``c/m`` and impulses ``J/m``; gravity and Coulomb friction are
      mass-independent, so a mass is observable only from a known impulse or drag.
    * The discrete choices (flight, impact, resting) are not differentiated: the trajectory is continuous
      across them, and the gradient is that of the branch taken.
    * Sliding: before the stop ``d x / d μ = -g t²/2``; after the stop the position is ``v0²/(2 μ g)`` and its
      derivative ``-v0²/(2 μ² g)``, so positions are C¹ in μ and stay informative; the velocity after the stop
      is zero with zero gradient.
    * Micro-bounces that would land again inside the same substep become resting contact (an inelastic landing),
      so the Zeno tail of a bouncing ball is cut at the substep scale; the derivatives there are those of the
      inelastic model.
    * Contacts act on the centre of mass only: friction does not spin a sphere into rolling and a box does not
      tip. The orientation is kinematic: it turns at a constant world-frame angular velocity, which is the
      torque-free motion of bodies with isotropic inertia (spheres, cubes). The contact height of a box follows
      its orientation through its support point along -y (fixed within a frame).
    * The ground is flat and infinite; no body-body contact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from runner.geometry.transforms import quaternion_multiply
from runner.physics.base import RIGID_CONTACT, PhysParams, State, Trajectory, check_engine_args, check_rollout_args


@dataclass(frozen=True)
class RigidParams(PhysParams):
    """The physical model of N rigid bodies.

    Attributes:
        mass: (N,) mass [kg], > 0.
        restitution: (N,) coefficient of restitution with the ground, in [0, 1].
        friction: (N,) Coulomb friction coefficient μ with the ground, ≥ 0.
        drag: (N,) linear drag coefficient c [N s/m], ≥ 0: force ``-c v``.
        half_extents: (N, 3) box half-sizes along the body axes [m], > 0; a sphere's radius is ``[:, 0]``.
        is_sphere: (N,) bool, True for a sphere, False for a box.
        impulse: (K, N, 3) known external impulses [N s] in the world frame, or None; ``impulse[k]`` is applied
            at the start of frame k (k < K ≤ steps) by :meth:`RigidBodies.rollout`, giving ``Δv = J / m``.
    """

    mass: Tensor
    restitution: Tensor
    friction: Tensor
    drag: Tensor
    half_extents: Tensor
    is_sphere: Tensor
    impulse: Tensor | None = None

    def __post_init__(self) -> None:
        n = self.mass.shape
        if self.mass.dim() != 1:
            raise ValueError(f"RigidParams.mass must have shape (N,), got {tuple(n)}")
        for name in ("restitution", "friction", "drag", "is_sphere"):
            if getattr(self, name).shape != n:
                raise ValueError(f"RigidParams.{name} must have shape {tuple(n)} like mass, "
                                 f"got {tuple(getattr(self, name).shape)}")
        if self.half_extents.shape != (*n, 3):
            raise ValueError(f"RigidParams.half_extents must have shape ({n[0]}, 3), "
                             f"got {tuple(self.half_extents.shape)}")
        if self.impulse is not None and (self.impulse.dim() != 3 or self.impulse.shape[1:] != (*n, 3)):
            raise ValueError(f"RigidParams.impulse must have shape (K, {n[0]}, 3), got {tuple(self.impulse.shape)}")
        if self.is_sphere.dtype != torch.bool:
            raise ValueError(f"RigidParams.is_sphere must be a bool tensor, got {self.is_sphere.dtype}")
        checks = (
            (self.mass <= 0, "mass [kg] must be > 0"),
            ((self.restitution < 0) | (self.restitution > 1), "restitution must be in [0, 1]"),
            (self.friction < 0, "friction coefficient must be >= 0"),
            (self.drag < 0, "drag [N s/m] must be >= 0"),
            (self.half_extents <= 0, "half_extents [m] must be > 0"),
        )
        for bad, message in checks:
            if bool(bad.any()):
                bodies = bad.reshape(n[0], -1).any(-1).nonzero().flatten().tolist()
                raise ValueError(f"RigidParams: {message}; bodies {bodies} are out of range")


class RigidBodies:
    """Spheres and boxes under gravity and linear drag with TOI-corrected ground contact (see module doc).

    Args:
        substeps: integration substeps per frame (≥ 1); a finer ground truth uses more.
        gravity: gravitational acceleration g [m/s²] ≥ 0, acting along -y.
        contact_tol: gap to the ground [m] under which a slow body counts as touching it.
    """

    capabilities = frozenset({RIGID_CONTACT})

    def __init__(self, substeps: int = 2, gravity: float = 9.81, contact_tol: float = 1e-6):
        check_engine_args("RigidBodies", substeps, gravity)
        if contact_tol < 0:
            raise ValueError(f"RigidBodies: contact_tol [m] must be >= 0, got {contact_tol}")
        self.substeps = substeps
        self.gravity = gravity
        self.contact_tol = contact_tol

    @staticmethod
    def initial_state(
        pos: Tensor | list, vel: Tensor | list | None = None, quat: Tensor | list | None = None,
        ang_vel: Tensor | list | None = None, dtype: torch.dtype = torch.float32,
    ) -> State:
        """A state from plain values.

        Args:
            pos: (N, 3) centres of mass [m] (y up; a resting sphere has y = radius).
            vel: (N, 3) velocities [m/s]; zeros by default.
            quat: (N, 4) orientations (w, x, y, z); identity by default.
            ang_vel: (N, 3) world-frame angular velocities [rad/s]; zeros by default.
            dtype: dtype of the state; tensors of that dtype are used as they are (and stay differentiable).
        """
        pos = torch.as_tensor(pos, dtype=dtype)
        if pos.dim() != 2 or pos.shape[-1] != 3:
            raise ValueError(f"RigidBodies.initial_state: pos must have shape (N, 3), got {tuple(pos.shape)}")
        n = pos.shape[0]
        vel = torch.zeros_like(pos) if vel is None else torch.as_tensor(vel, dtype=pos.dtype)
        ang_vel = torch.zeros_like(pos) if ang_vel is None else torch.as_tensor(ang_vel, dtype=pos.dtype)
        if quat is None:
            quat = torch.zeros(n, 4, dtype=pos.dtype)
            quat[:, 0] = 1.0
        quat = torch.as_tensor(quat, dtype=pos.dtype)
        for name, t, width in (("vel", vel, 3), ("ang_vel", ang_vel, 3), ("quat", quat, 4)):
            if t.shape != (n, width):
                raise ValueError(f"RigidBodies.initial_state: {name} must have shape ({n}, {width}), "
                                 f"got {tuple(t.shape)}")
        return State(pos=pos, vel=vel, quat=quat, ang_vel=ang_vel)

    def step(self, params: RigidParams, state: State, dt: float) -> State:
        """Advance one frame of ``dt`` [s] in ``substeps`` substeps; ``params.impulse`` is not applied here.

        Args:
            params: the bodies' model (N bodies).
            state: positions (N, 3) [m], velocities (N, 3) [m/s], quat (N, 4), ang_vel (N, 3) [rad/s].
            dt: frame length [s], > 0.

        Returns:
            The state after ``dt``; the orientation turns by ``ang_vel * dt``.
        """
        check_rollout_args(1, dt)
        if state.quat is None or state.ang_vel is None:
            raise ValueError("RigidBodies.step: the state needs quat and ang_vel; build it with initial_state()")
        if state.pos.shape != (params.mass.shape[0], 3):
            raise ValueError(f"RigidBodies.step: state.pos must be ({params.mass.shape[0]}, 3) for "
                             f"{params.mass.shape[0]} bodies, got {tuple(state.pos.shape)}")
        support = self._support(params, state.quat)
        drag_rate = (params.drag / params.mass)[:, None]  # (N, 1) c / m [1/s]
        gravity = torch.tensor([0.0, -self.gravity, 0.0], dtype=state.pos.dtype, device=state.pos.device)
        pos, vel = state.pos, state.vel
        h = dt / self.substeps
        for _ in range(self.substeps):
            pos, vel = self._substep(params, pos, vel, support, drag_rate, gravity, h)
        quat = state.quat
        if state.ang_vel.requires_grad or bool(state.ang_vel.any()):  # skip the identity rotation of still bodies
            quat = quaternion_multiply(_rotation_quaternion(state.ang_vel * dt), quat)
        return State(pos=pos, vel=vel, quat=quat, ang_vel=state.ang_vel)

    def rollout(self, params: RigidParams, state0: State, steps: int, dt: float) -> Trajectory:
        """``steps`` frames of ``dt`` [s]; ``params.impulse[k]`` adds ``J / m`` to the velocity before frame k.

        Returns:
            Trajectory with pos, vel (steps + 1, N, 3), quat (steps + 1, N, 4) and time (steps + 1,) [s].
        """
        check_rollout_args(steps, dt)
        if params.impulse is not None and params.impulse.shape[0] > steps:
            raise ValueError(f"RigidBodies.rollout: params.impulse covers {params.impulse.shape[0]} frames "
                             f"but the rollout has only {steps}")
        states = [state0]
        state = state0
        for k in range(steps):
            if params.impulse is not None and k < params.impulse.shape[0]:
                state = state.replace(vel=state.vel + params.impulse[k] / params.mass[:, None])
            state = self.step(params, state, dt)
            states.append(state)
        return Trajectory.from_states(states, dt)

    @staticmethod
    def _support(params: RigidParams, quat: Tensor) -> Tensor:
        """(N,) height [m] of each body's lowest point above its centre: the radius, or a box's support along -y."""
        if bool(params.is_sphere.all()):
            return params.half_extents[:, 0]
        w, x, y, z = torch.nn.functional.normalize(quat, dim=-1).unbind(-1)
        # Row y of the rotation matrix: the world height of each body axis (Shoemake, SIGGRAPH 1985).
        up_row = torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], dim=-1)
        box = (up_row.abs() * params.half_extents).sum(-1)
        return torch.where(params.is_sphere, params.half_extents[:, 0], box)

    def _substep(
        self, params: RigidParams, pos: Tensor, vel: Tensor, support: Tensor, drag_rate: Tensor, gravity: Tensor,
        h: float,
    ) -> tuple[Tensor, Tensor]:
        """One substep of h [s] for (N, 3) pos [m], vel [m/s]: flight, impact or contact.

        ``support`` (N,) is the lowest point's depth below the centre [m], ``drag_rate`` (N, 1) is c / m [1/s] and
        ``gravity`` (3,) the acceleration [m/s²].

        Branches that no body takes are skipped (a host-side test per branch), which keeps a rollout of a
        single flying body at a few dozen tensor operations per substep.
        """
        acc = gravity - drag_rate * vel
        vy, ay = vel[:, 1], acc[:, 1]
        gap0 = pos[:, 1] - support
        gn = (-ay).clamp(min=0)  # acceleration pressing the body onto the ground [m/s²]
        # Resting contact: touching, and no faster in the normal direction than gravity makes it in one substep.
        resting = (gap0 <= self.contact_tol) & (vy.abs() <= gn * h)
        if bool(resting.all()):
            return self._slide(params, pos, vel, support, drag_rate[:, 0], gn, h)

        pos1 = pos + vel * h + 0.5 * h * h * acc  # free flight: the exact parabola for constant acceleration
        vel1 = vel + acc * h
        hit = ~resting & (pos1[:, 1] < support)
        if bool(hit.any()):
            pos_im, vel_im, impact = self._impact(params, pos, vel, acc, gap0, hit, h)
            pos1 = torch.where(impact[:, None], pos_im, pos1)
            vel1 = torch.where(impact[:, None], vel_im, vel1)
        if bool(resting.any()):
            pos_sl, vel_sl = self._slide(params, pos, vel, support, drag_rate[:, 0], gn, h)
            pos1 = torch.where(resting[:, None], pos_sl, pos1)
            vel1 = torch.where(resting[:, None], vel_sl, vel1)
        # A landing again within the substep (micro-bounce) or a start below ground: put it back on the ground.
        below = pos1[:, 1] < support
        if bool(below.any()):
            pos1 = torch.where(below[:, None], _with_y(pos1, support), pos1)
            vel1 = torch.where(below[:, None], _with_y(vel1, vel1[:, 1].clamp(min=0)), vel1)
        return pos1, vel1

    def _impact(
        self, params: RigidParams, pos: Tensor, vel: Tensor, acc: Tensor, gap0: Tensor, hit: Tensor, h: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Flight to the time of impact τ, restitution and friction impulses, flight for h - τ.

        Returns:
            pos (N, 3) [m], vel (N, 3) [m/s] at the end of the substep, and the (N,) bool mask of bodies that
            really hit the ground (approaching it at τ).
        """
        vy, ay = vel[:, 1], acc[:, 1]
        # First root of gap0 + vy t + ay t²/2 = 0, in the cancellation-free form 2 gap0 / (√(vy² - 2 ay gap0) - vy).
        gap0p = gap0.clamp(min=0)
        denom = _safe_sqrt(vy * vy - 2 * ay * gap0p) - vy
        tau = (2 * gap0p / denom.clamp(min=1e-12)).clamp(max=h)[:, None]  # (N, 1) [s]
        vel_minus = vel + acc * tau
        vn_minus = vel_minus[:, 1]
        impact = hit & (vn_minus < 0)
        e, mu = params.restitution, params.friction
        jn = (1 + e) * (-vn_minus).clamp(min=0)  # normal impulse per unit mass [m/s]
        tangential = _with_y(vel_minus, torch.zeros_like(vn_minus))
        vel_plus = _with_y(_shrink(tangential, mu * jn), vn_minus + jn)  # v_n⁺ = -e v_n⁻
        rest = h - tau
        pos1 = pos + vel * tau + 0.5 * acc * tau * tau + vel_plus * rest + 0.5 * acc * rest * rest
        vel1 = vel_plus + acc * rest
        return pos1, vel1, impact

    @staticmethod
    def _slide(
        params: RigidParams, pos: Tensor, vel: Tensor, support: Tensor, k: Tensor, gn: Tensor, h: float
    ) -> tuple[Tensor, Tensor]:
        """Resting or sliding contact for h [s]: no normal motion; friction μ gn plus drag k|v| stop exactly."""
        vt = vel * vel.new_tensor([1.0, 0.0, 1.0])  # tangential velocity (N, 3), y = 0
        speed = _safe_norm(vt)
        decel = params.friction * gn + k * speed  # [m/s²] against the tangential velocity
        moving = speed > 0
        stops = speed <= decel * h
        safe_speed = torch.where(moving, speed, torch.ones_like(speed))
        # Time spent moving in this substep: h, or the stop time speed / decel, which is what clamps the friction.
        t_move = torch.where(stops, speed / torch.where(stops & moving, decel, torch.ones_like(decel)), h)
        travel = t_move * (1 - 0.5 * decel * t_move / safe_speed)  # distance / speed [s]
        remaining = torch.where(stops, torch.zeros_like(speed), 1 - decel * h / safe_speed)  # new speed / speed
        return _with_y(pos + vt * travel[:, None], support), vt * remaining[:, None]


def _safe_sqrt(x: Tensor) -> Tensor:
    """sqrt(max(x, 0)) with a zero (not infinite) gradient where x ≤ 0."""
    pos = x > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, x, torch.ones_like(x))), torch.zeros_like(x))


def _safe_norm(v: Tensor) -> Tensor:
    """(..., D) -> (...) Euclidean norm with a zero gradient at the zero vector."""
    return _safe_sqrt((v * v).sum(-1))


def _shrink(v: Tensor, amount: Tensor) -> Tensor:
    """Reduce the length of (N, D) vectors ``v`` by ``amount`` (N,) ≥ 0, stopping at zero (never reversing)."""
    speed = _safe_norm(v)
    scale = (speed - amount).clamp(min=0) / torch.where(speed > 0, speed, torch.ones_like(speed))
    return v * scale[:, None]


def _with_y(v: Tensor, y: Tensor) -> Tensor:
    """(N, 3) vectors with their y component replaced by ``y`` (N,), out of place."""
    return torch.stack([v[:, 0], y, v[:, 2]], dim=-1)


def _rotation_quaternion(rotvec: Tensor) -> Tensor:
    """(N, 3) rotation vector [rad] -> (N, 4) unit quaternion (w, x, y, z); smooth at zero."""
    angle = _safe_norm(rotvec)
    half_sinc = 0.5 * torch.sinc(angle / (2 * torch.pi))  # sin(θ/2) / θ
    return torch.cat([torch.cos(0.5 * angle)[:, None], rotvec * half_sinc[:, None]], dim=-1)

