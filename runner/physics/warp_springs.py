"""The mass-spring model of :mod:`runner.physics.mass_spring`, stepped by NVIDIA Warp kernels on the CPU.

An optional backend (``pip install warp-lang``, the ``warp`` extra). Warp (Macklin, "Warp: A High-performance
Python Framework for GPU Simulation and Graphics", NVIDIA GTC 2022) compiles the two kernels below to native
code and records their launches on a ``wp.Tape``; :class:`_WarpRollout` wraps the whole rollout as one
``torch.autograd.Function`` whose backward replays the tape, so the engine plugs into torch losses like
:class:`~runner.physics.mass_spring.MassSpring`. The physics (forces, pins, semi-implicit Euler, conventions)
is identical to that module; see its docstring.

Limits: Warp computes in float32 whatever the input dtype (results are cast back), so compare it with the torch
engine to float32 tolerance; every substep keeps its own arrays for the tape, so memory grows with
``steps * substeps * N``; gradients flow to mass, stiffness, damping, rest lengths and the initial state.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from runner.physics.base import SPRINGS, State, Trajectory, check_engine_args, check_rollout_args
from runner.physics.mass_spring import MassSpring, SpringParams

try:
    import warp as wp
except ImportError as error:  # an optional backend: say how to get it
    raise ImportError("runner.physics.warp_springs needs NVIDIA Warp: pip install -e '.[warp]' "
                      "(the 'warp' extra of dwx)") from error

# Warp's start-up banner and per-module load messages are INFO; keep warnings and errors.
wp.config.log_level = max(wp.config.log_level, wp.LOG_WARNING)


@wp.kernel
def _accumulate_spring_forces(
    pos: wp.array(dtype=wp.vec3),
    vel: wp.array(dtype=wp.vec3),
    edge_i: wp.array(dtype=wp.int32),
    edge_j: wp.array(dtype=wp.int32),
    rest_length: wp.array(dtype=float),
    stiffness: wp.array(dtype=float),
    damping: wp.array(dtype=float),
    force: wp.array(dtype=wp.vec3),
):
    """One thread per spring: Hooke plus dashpot tension along the spring, added to both ends [N]."""
    s = wp.tid()
    i = edge_i[s]
    j = edge_j[s]
    d = pos[j] - pos[i]
    length = wp.length(d)
    unit = d / length
    tension = stiffness[s] * (length - rest_length[s]) + damping[s] * wp.dot(vel[j] - vel[i], unit)
    wp.atomic_add(force, i, tension * unit)
    wp.atomic_sub(force, j, tension * unit)


@wp.kernel
def _integrate(
    pos: wp.array(dtype=wp.vec3),
    vel: wp.array(dtype=wp.vec3),
    force: wp.array(dtype=wp.vec3),
    inv_mass: wp.array(dtype=float),
    gravity: wp.array(dtype=wp.vec3),
    h: float,
    pos_out: wp.array(dtype=wp.vec3),
    vel_out: wp.array(dtype=wp.vec3),
):
    """One thread per particle: semi-implicit Euler over h [s]; pins have inv_mass 0 and gravity 0."""
    n = wp.tid()
    v = vel[n] + h * (gravity[n] + force[n] * inv_mass[n])
    vel_out[n] = v
    pos_out[n] = pos[n] + h * v


class WarpMassSpring:
    """Damped springs between particles integrated by Warp kernels on the CPU (same model as MassSpring).

    Args:
        substeps: integration substeps per frame (≥ 1); stiff springs need more.
        gravity: gravitational acceleration g [m/s²] ≥ 0, acting along -y.
    """

    capabilities = frozenset({SPRINGS})

    def __init__(self, substeps: int = 10, gravity: float = 9.81):
        check_engine_args("WarpMassSpring", substeps, gravity)
        self.substeps = substeps
        self.gravity = gravity

    initial_state = staticmethod(MassSpring.initial_state)

    def step(self, params: SpringParams, state: State, dt: float) -> State:
        """Advance one frame of ``dt`` [s]; positions and velocities (N, 3) in [m] and [m/s]."""
        traj = self.rollout(params, state, 1, dt)
        return State(pos=traj.pos[-1], vel=traj.vel[-1])

    def rollout(self, params: SpringParams, state0: State, steps: int, dt: float) -> Trajectory:
        """``steps`` frames of ``dt`` [s]; returns pos and vel (steps + 1, N, 3) and time (steps + 1,) [s]."""
        check_rollout_args(steps, dt)
        n_springs = params.edges.shape[0]
        free = (~params.pinned).to(state0.pos.dtype)
        gravity = torch.tensor([0.0, -self.gravity, 0.0], dtype=state0.pos.dtype) * free[:, None]
        pos, vel = _WarpRollout.apply(
            state0.pos, state0.vel, free / params.mass, params.stiffness.expand(n_springs),
            params.damping.expand(n_springs), params.rest_length, gravity, params.edges,
            steps * self.substeps, dt / self.substeps, self.substeps,
        )
        return Trajectory(pos=pos, vel=vel, quat=None,
                          time=torch.arange(steps + 1, dtype=pos.dtype, device=pos.device) * dt)


def _to_warp(t: Tensor, dtype, requires_grad: bool = True) -> wp.array:
    """A float32 (or int32) Warp copy of a CPU tensor."""
    numpy_dtype = np.int32 if dtype == wp.int32 else np.float32
    return wp.array(t.detach().cpu().numpy().astype(numpy_dtype), dtype=dtype, device="cpu",
                    requires_grad=requires_grad)


def _to_torch(a: wp.array, like: Tensor) -> Tensor:
    return torch.from_numpy(a.numpy().copy()).to(dtype=like.dtype, device=like.device)


class _WarpRollout(torch.autograd.Function):
    """Positions and velocities (frames + 1, N, 3) of a Warp rollout; backward replays the wp.Tape."""

    @staticmethod
    def forward(ctx, pos0, vel0, inv_mass, stiffness, damping, rest_length, gravity, edges, substeps_total, h,
                substeps_per_frame):
        inputs = {
            "pos0": _to_warp(pos0, wp.vec3), "vel0": _to_warp(vel0, wp.vec3),
            "inv_mass": _to_warp(inv_mass, float), "stiffness": _to_warp(stiffness, float),
            "damping": _to_warp(damping, float), "rest_length": _to_warp(rest_length, float),
        }
        gravity_w = _to_warp(gravity, wp.vec3, requires_grad=False)
        edge_i = _to_warp(edges[:, 0], wp.int32, requires_grad=False)
        edge_j = _to_warp(edges[:, 1], wp.int32, requires_grad=False)
        n = pos0.shape[0]
        positions, velocities = [inputs["pos0"]], [inputs["vel0"]]
        tape = wp.Tape()
        with tape:
            for _ in range(substeps_total):
                force = wp.zeros(n, dtype=wp.vec3, device="cpu", requires_grad=True)
                wp.launch(_accumulate_spring_forces, dim=edges.shape[0], device="cpu",
                          inputs=[positions[-1], velocities[-1], edge_i, edge_j, inputs["rest_length"],
                                  inputs["stiffness"], inputs["damping"]],
                          outputs=[force])
                pos_out = wp.empty(n, dtype=wp.vec3, device="cpu", requires_grad=True)
                vel_out = wp.empty(n, dtype=wp.vec3, device="cpu", requires_grad=True)
                wp.launch(_integrate, dim=n, device="cpu",
                          inputs=[positions[-1], velocities[-1], force, inputs["inv_mass"], gravity_w, h],
                          outputs=[pos_out, vel_out])
                positions.append(pos_out)
                velocities.append(vel_out)
        frames = range(0, substeps_total + 1, substeps_per_frame)
        ctx.tape, ctx.inputs, ctx.like = tape, inputs, pos0
        ctx.frame_arrays = [(positions[f], velocities[f]) for f in frames]
        pos = torch.stack([_to_torch(positions[f], pos0) for f in frames])
        vel = torch.stack([_to_torch(velocities[f], pos0) for f in frames])
        return pos, vel

    @staticmethod
    def backward(ctx, grad_pos, grad_vel):
        grads = {}
        for f, (pos_w, vel_w) in enumerate(ctx.frame_arrays):
            # the first frame is the input itself: its gradient is added after the tape replay
            if f > 0:
                grads[pos_w] = _to_warp(grad_pos[f], wp.vec3, requires_grad=False)
                grads[vel_w] = _to_warp(grad_vel[f], wp.vec3, requires_grad=False)
        ctx.tape.backward(grads=grads)
        out = {name: _to_torch(array.grad, ctx.like) for name, array in ctx.inputs.items()}
        ctx.tape.reset()
        return (out["pos0"] + grad_pos[0], out["vel0"] + grad_vel[0], out["inv_mass"], out["stiffness"],
                out["damping"], out["rest_length"], None, None, None, None, None)
