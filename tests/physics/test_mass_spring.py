"""Mass-spring networks: forces vs a naive loop, energy, equilibrium, pins, gradients, bad input."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from runner.physics.base import State
from runner.physics.mass_spring import MassSpring, SpringParams, chain, cloth

DT = 1 / 30
F64 = torch.float64


def naive_step(params: SpringParams, pos, vel, h: float, g: float):
    """One semi-implicit Euler substep with a Python loop over springs (the reference)."""
    force = [torch.tensor([0.0, -g * float(m), 0.0], dtype=F64) for m in params.mass]
    for s, (i, j) in enumerate(params.edges.tolist()):
        d = pos[j] - pos[i]
        unit = d / d.norm()
        k = params.stiffness.expand(params.edges.shape[0])[s]
        c = params.damping.expand(params.edges.shape[0])[s]
        tension = k * (d.norm() - params.rest_length[s]) + c * torch.dot(vel[j] - vel[i], unit)
        force[i] = force[i] + tension * unit
        force[j] = force[j] - tension * unit
    new_vel = torch.stack([
        vel[n] if params.pinned[n] else vel[n] + h * force[n] / params.mass[n] for n in range(len(force))
    ])
    return pos + h * new_vel, new_vel


def test_step_matches_a_naive_loop_over_springs():
    params, s0 = cloth(3, 3, 0.1, 0.02, 40.0, 0.05, dtype=F64)
    params = replace(params, stiffness=torch.linspace(30.0, 50.0, params.edges.shape[0], dtype=F64))
    generator = torch.Generator().manual_seed(0)
    pos = s0.pos + 0.01 * torch.randn(s0.pos.shape, generator=generator, dtype=F64)
    vel = 0.1 * torch.randn(s0.pos.shape, generator=generator, dtype=F64)
    engine = MassSpring(substeps=3)
    got = engine.step(params, State(pos=pos, vel=vel), DT)
    for _ in range(3):
        pos, vel = naive_step(params, pos, vel, DT / 3, 9.81)
    torch.testing.assert_close(got.pos, pos)
    torch.testing.assert_close(got.vel, vel)


def spring_energy(params: SpringParams, pos, vel, g: float):
    """(T,) total energy [J]: kinetic + elastic + gravitational, for pos, vel (T, N, 3)."""
    length = (pos[:, params.edges[:, 1]] - pos[:, params.edges[:, 0]]).norm(dim=-1)
    elastic = 0.5 * (params.stiffness * (length - params.rest_length) ** 2).sum(-1)
    kinetic = 0.5 * (params.mass[:, None] * vel**2).sum((-1, -2))
    return kinetic + elastic + g * (params.mass * pos[..., 1]).sum(-1)


def test_undamped_springs_do_not_gain_energy():
    params, s0 = chain(5, 0.2, 0.05, 20.0, 0.0, dtype=F64)  # pinned at one end, swings under gravity
    engine = MassSpring(substeps=20)
    traj = engine.rollout(params, s0, 90, DT)
    energy = spring_energy(params, traj.pos, traj.vel, 9.81)
    scale = float(params.mass.sum() * 9.81 * 0.8)  # [J] the order of the potential energy released
    # the symplectic scheme keeps a modified energy: a bounded oscillation (< 1 %), no growth
    assert float(energy[-30:].max() - energy[0]) < 0.01 * scale
    assert float((energy - energy[0]).abs().max()) < 0.01 * scale


def test_damped_hanging_spring_settles_at_the_static_extension():
    mass, k, l0 = 0.1, 25.0, 0.3
    params = SpringParams(
        mass=torch.tensor([1.0, mass], dtype=F64), stiffness=torch.tensor(k, dtype=F64),
        damping=torch.tensor(1.5, dtype=F64), rest_length=torch.tensor([l0], dtype=F64),
        edges=torch.tensor([[0, 1]]), pinned=torch.tensor([True, False]),
    )
    s0 = MassSpring.initial_state([[0.0, 0.0, 0.0], [0.0, -l0, 0.0]], dtype=F64)
    traj = MassSpring(substeps=10).rollout(params, s0, 120, DT)
    torch.testing.assert_close(traj.pos[-1, 1, 1], torch.tensor(-(l0 + mass * 9.81 / k), dtype=F64),
                               atol=1e-6, rtol=0)
    assert bool((traj.pos[:, 0] == 0).all())  # the pin does not move


def test_small_oscillation_frequency_is_sqrt_k_over_m():
    mass, k = 0.05, 20.0
    params, s0 = chain(2, 0.5, mass, k, 0.0, dtype=F64)
    s0 = s0.replace(pos=s0.pos + torch.tensor([[0.0, 0.0, 0.0], [0.01, 0.0, 0.0]], dtype=F64))
    traj = MassSpring(substeps=20, gravity=0.0).rollout(params, s0, 60, DT)
    x = traj.pos[:, 1, 0] - 0.5
    t = traj.time
    i = torch.nonzero((x[:-1] < 0) & (x[1:] >= 0)).flatten()
    crossings = t[i] + DT * (-x[i]) / (x[i + 1] - x[i])
    period = (crossings[-1] - crossings[0]) / (len(crossings) - 1)
    assert abs(float(period) - 2 * math.pi * math.sqrt(mass / k)) < 0.01 * float(period)


def test_cloth_shapes_pins_and_gravity():
    params, s0 = cloth(4, 5, 0.1, 0.01, 50.0, 0.02)
    assert params.edges.shape == (4 * 4 + 3 * 5 + 2 * 3 * 4, 2) and s0.pos.shape == (20, 3)
    traj = MassSpring().rollout(params, s0, 10, DT)
    assert traj.pos.shape == (11, 20, 3) and traj.pos.dtype == torch.float32
    torch.testing.assert_close(traj.pos[:, params.pinned], s0.pos[params.pinned].expand(11, 2, 3))
    assert float(traj.pos[-1, ~params.pinned, 1].mean()) < float(s0.pos[~params.pinned, 1].mean())


def test_gradients_match_finite_differences():
    base, s0 = chain(3, 0.2, 0.05, 15.0, 0.05, dtype=F64)
    base = replace(base, stiffness=torch.tensor([15.0, 25.0], dtype=F64))
    engine = MassSpring(substeps=4)

    def f(mass, stiffness, damping, rest_length, pos0, vel0):
        params = replace(base, mass=mass, stiffness=stiffness, damping=damping, rest_length=rest_length)
        traj = engine.rollout(params, State(pos=pos0, vel=vel0), 6, DT)
        return traj.pos[::2], traj.vel[::2]

    vel0 = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.3, -0.2], [0.0, -0.5, 0.1]], dtype=F64)
    args = (base.mass, base.stiffness, base.damping, base.rest_length * 1.1, s0.pos, vel0)
    assert torch.autograd.gradcheck(f, tuple(a.clone().requires_grad_() for a in args), fast_mode=True)


def test_bad_inputs_raise_clear_errors():
    params, s0 = chain(3, 0.2, 0.05, 15.0, 0.05)
    with pytest.raises(ValueError, match=r"mass \[kg\] must be > 0"):
        replace(params, mass=torch.tensor([0.05, -1.0, 0.05]))
    with pytest.raises(ValueError, match=r"stiffness \[N/m\] must be >= 0"):
        replace(params, stiffness=torch.tensor(-1.0))
    with pytest.raises(ValueError, match="stiffness must be"):
        replace(params, stiffness=torch.ones(5))
    with pytest.raises(ValueError, match="edges must join two different particles"):
        replace(params, edges=torch.tensor([[0, 1], [1, 3]]))
    with pytest.raises(ValueError, match=r"dt \[s\] must be > 0"):
        MassSpring().rollout(params, s0, 3, -0.1)
    with pytest.raises(ValueError, match="substeps"):
        MassSpring(substeps=0)
    with pytest.raises(ValueError, match="num must be >= 2"):
        chain(1, 0.2, 0.05, 15.0, 0.05)
