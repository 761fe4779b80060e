"""Rigid spheres and boxes on the ground plane simulated by Newton, differentiable from torch.

An optional backend (``pip install newton``, the ``newton`` extra). Newton (NVIDIA, Google DeepMind and Disney
Research; the successor of ``warp.sim``) is a GPU physics engine written in NVIDIA Warp that also runs, and
differentiates through ``wp.Tape``, on the CPU. :class:`NewtonRigid` takes dwx's :class:`RigidParams` and
:class:`State` and returns a :class:`Trajectory` like :class:`runner.physics.rigid.RigidBodies`; the whole rollout
is one ``torch.autograd.Function`` whose backward replays Newton's tape (as :mod:`runner.physics.warp_springs`).

Solver: ``newton.solvers.SolverSemiImplicit``, Newton's differentiable rigid-body solver: symplectic Euler with a
compliant (penalty) contact per contact point, a normal spring ``ke`` [N/m] on the penetration depth, a damper
``kd`` [N s/m] that acts while the contact compresses, and regularised Coulomb friction (a viscous slope ``kf``
[N s/m] capped at ``mu`` times the normal force). Its forces are functions of the state that Warp differentiates,
so its tape gives the derivatives of the discrete rollout. ``SolverXPBD`` models restitution directly and its
forward bounces are right, but on the CPU its tape returned a zero derivative of a bounce height with respect to
restitution (central differences: 4.3), so it is not used; ``SolverFeatherstone`` and ``SolverMuJoCo`` simulate
articulations in generalised coordinates and add nothing for free bodies.

How dwx's parameters become Newton's, per body (a sphere touches the ground at one contact point, a box at its
four lowest corners, found by Newton's collision pipeline at the start of every frame):
    * ``restitution`` e sets the damper. A linear spring whose damper acts only in compression, hit at speed v,
      returns ``e v`` with ``e = exp(-φ(ζ))``, ``φ = ζ arccos(ζ) / sqrt(1 - ζ²)`` (``ζ arccosh(ζ) / sqrt(ζ² - 1)``
      for ζ > 1), of its damping ratio ``ζ = kd_total / (2 sqrt(ke_total m))``; :func:`damping_ratio` solves it
      for ζ, and the derivative flows through the implicit function. Newton's damper is explicit: a substep
      removes the fraction ``kd_total h / m`` of the approach speed (h the substep), so ``kd`` is chosen to make
      that fraction the exact ``1 - exp(-2 ζ ω h)``, ``ω = sqrt(ke_total / m)``. It stays below 1 for any e, and
      e = 0 stops the approach within a substep (a residual bounce of about ``ω h / 2``). Measured at the defaults
      (a 0.5 kg ball landing at 6 m/s, impacts swept across a substep): the realised e is on average 0.2-2.5 %
      below the request (gravity acts during the contact), with a standard deviation of 0.015 at e = 0.72 and
      0.035 at e = 0.3 over where the impact falls within a substep, because the damper switches on at a
      substep, not at the impact.
    * ``friction`` μ is Newton's ``mu``; ``kf`` is set to ``m / (n h)`` for n contact points, the steepest slope
      explicit integration keeps stable, so sliding friction is Coulomb's ``μ N`` and a slow slip stops within
      one substep (dwx's exact stop).
    * ``mass`` sets the inverse mass (contact, drag and impulse responses) and the damper and friction slopes
      above; ``drag`` c is an external force ``-c v`` on the centre of mass every substep; a known impulse
      ``impulse[k]`` is added as ``Δv = J / m`` at the start of frame k, before its substeps (as dwx's engine).
    * The orientation is kinematic, as in :mod:`runner.physics.rigid`: the bodies have no rotational inertia
      (zero inverse inertia), so contact and friction torques do not spin a sphere or tip a box, and the
      orientation turns at the constant initial angular velocity (first-order quaternion update per substep).
    * Newton's material of a contact is the mean of its two shapes'; the ground's is zero and each body's is
      twice its own, so each body meets the ground with its own coefficients. Bodies do not collide.

Differences from :mod:`runner.physics.rigid` (measured on the rigid scenes in ``tests/physics/test_newton_rigid.py``):
contacts are compliant, so a ball sinks into the ground during a bounce by about ``v / ω`` (3.5 cm for a 0.5 kg
ball landing at 5 m/s at the defaults) and comes back later than after dwx's instantaneous impulse, and a resting
block sinks by ``m g / (n ke)``; free flight is symplectic Euler, first order in h (dwx's parabola is exact); the
contact of a spinning body uses the velocity of its contact point.

Derivatives: the tape gives the exact derivatives of this discrete model with respect to mass, restitution,
friction, drag, the impulses and the initial state (position, velocity, orientation, angular velocity); not to
``half_extents``, which are baked into Newton's shapes. Restitution through a ball's first bounce, friction, mass
(push), and the initial velocity in flight and while sliding match central differences. Through a bounce whose
time moves with the differentiated quantity (a falling ball's initial state or drag; restitution, for the
bounces after the first) the tape also differentiates the realised restitution's dependence on where the impact
falls within a substep, a sawtooth of period h whose slope does not shrink with h. Measured: the projectile's
speed over its 30 frames, tape -3.53, central differences -3.60 with a step of 1e-3 (within a substep) but +0.33
with 1e-2 (over several); the bouncing ball's restitution at e = 0.5 over 45 frames (two bounces), tape -32.6,
differences -12.9 (step 1e-2) and -14.7 (1e-3). dwx's own engine avoids this with its time-of-impact
correction; Newton's contact switches on at substep boundaries and has none.

Serves every rigid scene of ``physical_params``: projectile, bouncing ball, sliding block and push. Newton
computes in float32 whatever the input dtype. A substep is three kernel launches (drag, contact, integration),
about 0.3 ms forward and as much backward for one body on a CPU core, 20-50x the cost of dwx's engine
(``benchmarks/backends_physics.py``); each substep keeps its arrays for the tape, so memory grows with
``steps * substeps * N``.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from runner.physics.base import RIGID_CONTACT, State, Trajectory, check_engine_args, check_rollout_args
from runner.physics.rigid import RigidBodies, RigidParams

try:
    import newton
    import warp as wp
except ImportError as error:  # an optional backend: say how to get it
    raise ImportError(
        "runner.physics.newton_rigid needs Newton: pip install -e '.[newton]' (the 'newton' extra of dwx)"
    ) from error

# Warp's start-up banner and per-module load messages are INFO; keep warnings and errors.
wp.config.log_level = max(wp.config.log_level, wp.LOG_WARNING)

_GAP = 1.0e3  # contact detection distance [m]: every body keeps its contact points with the ground at any height


@wp.kernel
def _initial_state(
    pos: wp.array(dtype=wp.vec3),
    quat: wp.array(dtype=wp.quat),
    vel: wp.array(dtype=wp.vec3),
    ang_vel: wp.array(dtype=wp.vec3),
    body_q: wp.array(dtype=wp.transform),
    body_qd: wp.array(dtype=wp.spatial_vector),
):
    """One thread per body: Newton's pose (position, quaternion x y z w) and twist (linear, angular velocity)."""
    i = wp.tid()
    body_q[i] = wp.transform(pos[i], quat[i])
    body_qd[i] = wp.spatial_vector(vel[i], ang_vel[i])


@wp.kernel
def _apply_impulse(
    body_qd: wp.array(dtype=wp.spatial_vector),
    impulse: wp.array(dtype=wp.vec3),
    inv_mass: wp.array(dtype=float),
    body_qd_out: wp.array(dtype=wp.spatial_vector),
):
    """One thread per body: a known impulse J [N s] changes the velocity by J / m."""
    i = wp.tid()
    qd = body_qd[i]
    body_qd_out[i] = wp.spatial_vector(wp.spatial_top(qd) + impulse[i] * inv_mass[i], wp.spatial_bottom(qd))


@wp.kernel
def _drag_force(
    body_qd: wp.array(dtype=wp.spatial_vector),
    drag: wp.array(dtype=float),
    body_f: wp.array(dtype=wp.spatial_vector),
):
    """One thread per body: the external wrench of a substep, linear drag -c v [N] on the centre of mass."""
    i = wp.tid()
    body_f[i] = wp.spatial_vector(-drag[i] * wp.spatial_top(body_qd[i]), wp.vec3(0.0, 0.0, 0.0))


@dataclass
class _Scene:
    """A Newton model of N bodies over the ground plane (shape 0), with its solver and collision pipeline."""

    model: object  # newton.Model
    solver: object  # newton.solvers.SolverSemiImplicit
    pipeline: object  # newton.CollisionPipeline
    contacts_per_body: Tensor  # (N,) contact points n of each body on the ground: 1 for a sphere, 4 for a box


class NewtonRigid:
    """Spheres and boxes on the ground plane y = 0 simulated by Newton's semi-implicit solver (see module doc).

    Args:
        substeps: solver substeps per frame (≥ 1); the contact needs ``sqrt(n ke / m) * dt / substeps ≤ 1``.
        gravity: gravitational acceleration g [m/s²] ≥ 0, acting along -y.
        contact_ke: Newton's contact stiffness ``ke`` per contact point [N/m], > 0: the ground pushes back
            with ``ke * depth``; stiffer is closer to dwx's rigid contact and needs more substeps.
    """

    capabilities = frozenset({RIGID_CONTACT})

    def __init__(self, substeps: int = 32, gravity: float = 9.81, contact_ke: float = 1.0e4):
        check_engine_args("NewtonRigid", substeps, gravity)
        if not contact_ke > 0:
            raise ValueError(f"NewtonRigid: contact_ke [N/m] must be > 0, got {contact_ke}")
        self.substeps = substeps
        self.gravity = gravity
        self.contact_ke = contact_ke
        self._scenes: dict[tuple, _Scene] = {}  # Newton models by the bodies' shapes and sizes

    initial_state = staticmethod(RigidBodies.initial_state)

    def step(self, params: RigidParams, state: State, dt: float) -> State:
        """Advance one frame of ``dt`` [s]; ``params.impulse`` is not applied here (as RigidBodies.step)."""
        traj = self.rollout(replace(params, impulse=None), state, 1, dt)
        return State(pos=traj.pos[-1], vel=traj.vel[-1], quat=traj.quat[-1], ang_vel=state.ang_vel)

    def rollout(self, params: RigidParams, state0: State, steps: int, dt: float) -> Trajectory:
        """``steps`` frames of ``dt`` [s]; ``params.impulse[k]`` adds ``J / m`` to the velocity before frame k.

        Args:
            params: the bodies' model (N bodies); ``half_extents`` are not differentiated.
            state0: pos, vel, ang_vel (N, 3) and quat (N, 4) (w, x, y, z), e.g. from :meth:`initial_state`.

        Returns:
            Trajectory with pos, vel (steps + 1, N, 3), quat (steps + 1, N, 4) and time (steps + 1,) [s], in the
            dtype of ``state0.pos`` (computed in float32).
        """
        check_rollout_args(steps, dt)
        n = params.mass.shape[0]
        if state0.quat is None or state0.ang_vel is None:
            raise ValueError("NewtonRigid.rollout: the state needs quat and ang_vel; build it with initial_state()")
        if state0.pos.shape != (n, 3):
            raise ValueError(
                f"NewtonRigid.rollout: state.pos must be ({n}, 3) for {n} bodies, got {tuple(state0.pos.shape)}"
            )
        if params.impulse is not None and params.impulse.shape[0] > steps:
            raise ValueError(
                f"NewtonRigid.rollout: params.impulse covers {params.impulse.shape[0]} frames "
                f"but the rollout has only {steps}"
            )
        scene = self._scene(params)
        h = dt / self.substeps
        contact_coefficients = self._contact_coefficients(params, scene.contacts_per_body, h)
        impulse = params.impulse if params.impulse is not None else state0.pos.new_zeros(0, n, 3)
        inputs = (
            state0.pos,
            state0.vel,
            state0.quat,
            state0.ang_vel,
            1.0 / params.mass,
            *contact_coefficients,
            params.drag,
            impulse,
        )
        record = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)  # else no tape is kept
        pos, vel, quat = _NewtonRollout.apply(*inputs, scene, steps, self.substeps, h, record)
        time = torch.arange(steps + 1, dtype=pos.dtype, device=pos.device) * dt
        return Trajectory(pos=pos, vel=vel, quat=quat, time=time)

    def _contact_coefficients(self, params: RigidParams, n: Tensor, h: float) -> tuple[Tensor, Tensor, Tensor]:
        """Newton's per-shape ``kd``, ``kf`` and ``mu`` (N + 1,), ground first, from the bodies' parameters.

        Each body's shape carries twice its coefficient because Newton averages the two shapes of a contact and
        the ground's are zero. Raises a ValueError when the contact spring is too stiff for the substep.
        """
        mass = params.mass
        n = n.to(mass.dtype)
        omega = torch.sqrt(n * self.contact_ke / mass)  # (N,) contact frequency [rad/s]
        worst = float((omega * h).detach().max())
        if worst > 1.0:  # symplectic Euler is stable below 2; the realised restitution degrades well before
            needed = int(np.ceil(self.substeps * worst))
            raise ValueError(
                f"NewtonRigid: contact_ke {self.contact_ke:g} N/m is too stiff for {self.substeps} substeps "
                f"(sqrt(n ke / m) * h = {worst:.2f} > 1 for the lightest body); use substeps >= {needed} "
                "or a smaller contact_ke"
            )
        # the explicit damper whose decay per substep is the exact exp(-2 ζ ω h): kd_total h / m < 1 for any e,
        # and 1 (the approach stopped within a substep) for e = 0, where ζ = inf
        zeta = damping_ratio(params.restitution)
        finite = torch.isfinite(zeta)
        decay = torch.where(finite, torch.exp(-2 * torch.where(finite, zeta, 0.0) * omega * h), 0.0)
        kd = mass * (1 - decay) / (n * h)  # per contact point [N s/m]
        kf = mass / (n * h)  # per contact point [N s/m]: stops a slow slip within one substep
        ground = mass.new_zeros(1)
        return tuple(torch.cat([ground, 2 * c]) for c in (kd, kf, params.friction))

    def _scene(self, params: RigidParams) -> _Scene:
        """The Newton model of these shapes and sizes (built once, then reused with new coefficients)."""
        spheres = tuple(bool(s) for s in params.is_sphere.tolist())
        sizes = tuple(tuple(float(x) for x in row) for row in params.half_extents.detach().tolist())
        key = (spheres, sizes)
        if key not in self._scenes:
            self._scenes[key] = self._build(spheres, sizes)
        return self._scenes[key]

    def _build(self, spheres: tuple[bool, ...], sizes: tuple[tuple[float, float, float], ...]) -> _Scene:
        builder = newton.ModelBuilder(up_axis=newton.Axis.Y, gravity=(0.0, -self.gravity, 0.0))
        ground = builder.add_ground_plane(cfg=newton.ModelBuilder.ShapeConfig(ke=0.0, kd=0.0, kf=0.0, mu=0.0))
        shapes = []
        for sphere, (hx, hy, hz) in zip(spheres, sizes):
            # mass and inertia are placeholders that each rollout replaces (inertia: none, see module doc)
            body = builder.add_link(mass=1.0, inertia=wp.mat33(np.eye(3, dtype=np.float32)))
            cfg = newton.ModelBuilder.ShapeConfig(density=0.0, ke=2 * self.contact_ke, gap=_GAP)
            if sphere:
                shapes.append(builder.add_shape_sphere(body, radius=hx, cfg=cfg))
            else:
                shapes.append(builder.add_shape_box(body, hx=hx, hy=hy, hz=hz, cfg=cfg))
        model = builder.finalize(device="cpu", requires_grad=True)
        model.body_inertia = wp.zeros(len(shapes), dtype=wp.mat33, device="cpu")
        model.body_inv_inertia = wp.zeros(len(shapes), dtype=wp.mat33, device="cpu")
        pairs = wp.array(np.array([[ground, s] for s in shapes], dtype=np.int32), dtype=wp.vec2i, device="cpu")
        pipeline = newton.CollisionPipeline(
            model,
            broad_phase="explicit",
            shape_pairs_filtered=pairs,
            reduce_contacts=False,
            rigid_contact_max=8 * len(shapes),
            requires_grad=False,
        )
        solver = newton.solvers.SolverSemiImplicit(model, angular_damping=0.0)
        contacts_per_body = torch.tensor([1 if s else 4 for s in spheres])
        return _Scene(model=model, solver=solver, pipeline=pipeline, contacts_per_body=contacts_per_body)


def restitution_of(zeta: Tensor) -> Tensor:
    """(N,) damping ratio ζ ≥ 0 -> (N,) coefficient of restitution of a linear spring whose damper acts only in
    compression: ``exp(-φ(ζ))`` with ``φ = ζ arccos(ζ) / sqrt(1 - ζ²)`` for ζ < 1, ``φ(1) = 1`` (critical
    damping) and ``φ = ζ arccosh(ζ) / sqrt(ζ² - 1)`` for ζ > 1."""
    return torch.exp(-_phi(zeta))


def damping_ratio(restitution: Tensor) -> Tensor:
    """(N,) restitution e in [0, 1] -> (N,) damping ratio ζ with :func:`restitution_of` (ζ) = e (inf for e = 0).

    Solved by bisection in float64; the derivative is that of the implicit function, ``dζ/de = -1 / (e φ'(ζ))``.
    """
    bouncing = restitution > 0
    e = torch.where(bouncing, restitution, torch.ones_like(restitution)).to(torch.float64)  # e = 0: ζ = inf
    target = -torch.log(e.detach())  # φ(ζ) = -ln e, increasing in ζ; φ(ζ) ≈ ln(2 ζ) for large ζ
    low = torch.zeros_like(e)
    high = torch.clamp(torch.exp(target), min=2.0)
    for _ in range(80):
        middle = 0.5 * (low + high)
        above = _phi(middle) > target
        high = torch.where(above, middle, high)
        low = torch.where(above, low, middle)
    zeta = 0.5 * (low + high)
    zeta_leaf = zeta.clone().requires_grad_()
    with torch.enable_grad():
        (slope,) = torch.autograd.grad(_phi(zeta_leaf).sum(), zeta_leaf)  # φ'(ζ) > 0
    phi = -torch.log(e)
    zeta = torch.where(bouncing, zeta + (phi - phi.detach()) / slope, torch.full_like(zeta, torch.inf))
    return zeta.to(restitution.dtype)


def _phi(zeta: Tensor) -> Tensor:
    """φ(ζ) = -ln e of :func:`restitution_of`, smooth through ζ = 1 (where φ ≈ 1 + 2 (ζ - 1) / 3)."""
    near = (zeta - 1).abs() < 1e-4
    under = torch.where(zeta < 1, zeta, torch.zeros_like(zeta)).clamp(max=1 - 1e-4)
    over = torch.where(zeta > 1, zeta, torch.full_like(zeta, 2.0)).clamp(min=1 + 1e-4)
    phi_under = under * torch.arccos(under) / torch.sqrt(1 - under * under)
    phi_over = over * torch.arccosh(over) / torch.sqrt(over * over - 1)
    return torch.where(near, 1 + 2 * (zeta - 1) / 3, torch.where(zeta < 1, phi_under, phi_over))


def _to_warp(t: Tensor, dtype, requires_grad: bool) -> wp.array:
    """A float32 Warp copy of a CPU tensor whose last axis holds the Warp type's components."""
    return wp.array(t.detach().cpu().numpy().astype(np.float32), dtype=dtype, device="cpu", requires_grad=requires_grad)


def _grad(a: wp.array, like: Tensor) -> Tensor:
    """The gradient Warp accumulated in ``a.grad``, as a tensor of ``like``'s dtype and shape."""
    return torch.from_numpy(a.grad.numpy().copy()).to(dtype=like.dtype, device=like.device).reshape(like.shape)


def _recording(tapes: list, record: bool):
    """A context that records Warp's launches on a new tape appended to ``tapes``, or nothing without ``record``."""
    if not record:
        return nullcontext()
    tapes.append(wp.Tape())
    return tapes[-1]


def _new_state(n: int, requires_grad: bool) -> newton.State:
    """A Newton state of n bodies that the next substep writes (pose, twist; the wrench is added per substep)."""
    state = newton.State()
    state.body_q = wp.empty(n, dtype=wp.transform, device="cpu", requires_grad=requires_grad)
    state.body_qd = wp.empty(n, dtype=wp.spatial_vector, device="cpu", requires_grad=requires_grad)
    return state


class _NewtonRollout(torch.autograd.Function):
    """Positions, velocities (frames + 1, N, 3) and orientations (frames + 1, N, 4) of a Newton rollout;
    backward replays the wp.Tape of every launch."""

    @staticmethod
    def forward(
        ctx, pos0, vel0, quat0, ang_vel0, inv_mass, kd, kf, mu, drag, impulse, scene, steps, substeps, h, record
    ):
        n = pos0.shape[0]
        wxyz_to_xyzw = quat0[:, [1, 2, 3, 0]]
        inputs = {
            "pos0": _to_warp(pos0, wp.vec3, record),
            "vel0": _to_warp(vel0, wp.vec3, record),
            "quat0": _to_warp(wxyz_to_xyzw, wp.quat, record),
            "ang_vel0": _to_warp(ang_vel0, wp.vec3, record),
            "inv_mass": _to_warp(inv_mass, float, record),
            "kd": _to_warp(kd, float, record),
            "kf": _to_warp(kf, float, record),
            "mu": _to_warp(mu, float, record),
            "drag": _to_warp(drag, float, record),
        }
        impulses = [_to_warp(impulse[k], wp.vec3, record) for k in range(impulse.shape[0])]
        model = scene.model
        model.body_inv_mass = inputs["inv_mass"]
        model.shape_material_kd, model.shape_material_kf = inputs["kd"], inputs["kf"]
        model.shape_material_mu = inputs["mu"]
        control = model.control()
        # One tape per frame: Warp's tape scopes cost O(scopes) each, and the gradients live on the arrays, so
        # the frames' tapes replayed last to first chain like one tape.
        tapes = []
        state = _new_state(n, record)
        with _recording(tapes, record):
            wp.launch(
                _initial_state,
                dim=n,
                device="cpu",
                inputs=[inputs["pos0"], inputs["quat0"], inputs["vel0"], inputs["ang_vel0"]],
                outputs=[state.body_q, state.body_qd],
            )
        frames = [state]
        for k in range(steps):
            contacts = scene.pipeline.contacts()  # a new buffer per frame: the tape replays each frame's own
            scene.pipeline.collide(state, contacts)  # not recorded: contact points, not their derivatives
            with _recording(tapes, record):
                if k < len(impulses):
                    pushed = newton.State()
                    pushed.body_q = state.body_q
                    pushed.body_qd = wp.empty(n, dtype=wp.spatial_vector, device="cpu", requires_grad=record)
                    wp.launch(
                        _apply_impulse,
                        dim=n,
                        device="cpu",
                        inputs=[state.body_qd, impulses[k], inputs["inv_mass"]],
                        outputs=[pushed.body_qd],
                    )
                    state = pushed
                for _ in range(substeps):
                    state.body_f = wp.empty(n, dtype=wp.spatial_vector, device="cpu", requires_grad=record)
                    wp.launch(
                        _drag_force, dim=n, device="cpu", inputs=[state.body_qd, inputs["drag"]], outputs=[state.body_f]
                    )
                    following = _new_state(n, record)
                    scene.solver.step(state, following, control, contacts, h)
                    state = following
            frames.append(state)
        body_q = np.stack([f.body_q.numpy() for f in frames])  # (T + 1, N, 7): x y z, qx qy qz qw
        body_qd = np.stack([f.body_qd.numpy() for f in frames])  # (T + 1, N, 6): v, ω
        like = dict(dtype=pos0.dtype, device=pos0.device)
        pos = torch.from_numpy(body_q[..., :3].copy()).to(**like)
        quat = torch.from_numpy(body_q[..., [6, 3, 4, 5]].copy()).to(**like)
        vel = torch.from_numpy(body_qd[..., :3].copy()).to(**like)
        if record:
            ctx.tapes, ctx.inputs, ctx.impulses, ctx.frames = tapes, inputs, impulses, frames
            ctx.like = (pos0, vel0, quat0, ang_vel0, inv_mass, kd, kf, mu, drag, impulse)
        return pos, vel, quat

    @staticmethod
    def backward(ctx, grad_pos, grad_vel, grad_quat):
        for f, frame in enumerate(ctx.frames):
            q = torch.cat([grad_pos[f], grad_quat[f][:, [1, 2, 3, 0]]], dim=-1)  # (N, 7) like Newton's pose
            qd = torch.cat([grad_vel[f], torch.zeros_like(grad_vel[f])], dim=-1)  # (N, 6) like its twist
            frame.body_q.grad.assign(q.detach().cpu().numpy().astype(np.float32))
            frame.body_qd.grad.assign(qd.detach().cpu().numpy().astype(np.float32))
        for tape in reversed(ctx.tapes):
            tape.backward()
        pos0, vel0, quat0, ang_vel0, inv_mass, kd, kf, mu, drag, impulse = ctx.like
        names = ("pos0", "vel0", "quat0", "ang_vel0", "inv_mass", "kd", "kf", "mu", "drag")
        out = {name: _grad(ctx.inputs[name], t) for name, t in zip(names, ctx.like)}
        out["quat0"] = out["quat0"][:, [3, 0, 1, 2]]  # x y z w -> w x y z
        grad_impulse = (
            torch.stack([_grad(a, impulse[k]) for k, a in enumerate(ctx.impulses)])
            if ctx.impulses
            else torch.zeros_like(impulse)
        )
        for tape in ctx.tapes:
            tape.reset()
        return (
            out["pos0"],
            out["vel0"],
            out["quat0"],
            out["ang_vel0"],
            out["inv_mass"],
            out["kd"],
            out["kf"],
            out["mu"],
            out["drag"],
            grad_impulse,
            None,
            None,
            None,
            None,
            None,
        )
