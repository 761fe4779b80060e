"""Rigid bodies: analytic motions, TOI-corrected contact, gradients vs finite differences, bad input."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from runner.physics.rigid import RigidBodies, RigidParams

G = 9.81
DT = 1 / 30


def make_params(
    n: int = 1, mass: float = 1.0, restitution: float = 0.8, friction: float = 0.0, drag: float = 0.0,
    size: float = 0.1, sphere: bool = True, impulse: torch.Tensor | None = None,
) -> RigidParams:
    def full(value: float) -> torch.Tensor:
        return torch.full((n,), value, dtype=torch.float64)

    return RigidParams(
        mass=full(mass), restitution=full(restitution), friction=full(friction), drag=full(drag),
        half_extents=torch.full((n, 3), size, dtype=torch.float64), is_sphere=torch.full((n,), sphere),
        impulse=impulse,
    )


def state(pos, vel=None, ang_vel=None):
    return RigidBodies.initial_state(pos, vel, ang_vel=ang_vel, dtype=torch.float64)


def test_projectile_matches_the_analytic_parabola():
    engine = RigidBodies(substeps=2)
    traj = engine.rollout(make_params(), state([[0.0, 2.0, 0.0]], [[1.5, 4.0, -0.5]]), 20, DT)
    t = traj.time
    expected = torch.stack([1.5 * t, 2.0 + 4.0 * t - 0.5 * G * t * t, -0.5 * t], dim=-1)
    assert traj.pos.shape == (21, 1, 3) and traj.quat.shape == (21, 1, 4)
    torch.testing.assert_close(traj.pos[:, 0], expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(traj.vel[-1, 0], torch.tensor([1.5, 4.0 - G * t[-1], -0.5], dtype=torch.float64))


def test_push_gives_delta_v_equal_to_impulse_over_mass():
    impulse = torch.zeros(3, 2, 3, dtype=torch.float64)
    impulse[2, :, 0] = 3.0  # before frame 2, +x
    mass = torch.tensor([2.0, 0.5], dtype=torch.float64, requires_grad=True)
    params = replace(make_params(n=2, sphere=False, impulse=impulse), mass=mass)
    s0 = state([[0.0, 0.1, 0.0], [1.0, 0.1, 0.0]])  # boxes resting on the ground, frictionless
    traj = RigidBodies().rollout(params, s0, 5, DT)
    torch.testing.assert_close(traj.vel[2, :, 0], torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(traj.vel[3, :, 0], 3.0 / mass.detach())
    torch.testing.assert_close(traj.pos[:, :, 1], torch.full((6, 2), 0.1, dtype=torch.float64))  # stays on ground
    traj.vel[-1, :, 0].sum().backward()
    torch.testing.assert_close(mass.grad, -3.0 / mass.detach() ** 2)  # d(J/m)/dm


@pytest.mark.parametrize("substeps", [1, 3, 8])
def test_sliding_block_stops_at_the_analytic_distance_without_chatter(substeps):
    mu, v0 = 0.4, 3.0
    s0 = state([[0.0, 0.1, 0.0]], [[v0, 0.0, 0.0]])
    traj = RigidBodies(substeps=substeps).rollout(make_params(friction=mu, sphere=False), s0, 45, DT)
    x, vx = traj.pos[:, 0, 0], traj.vel[:, 0, 0]
    stop_time = v0 / (mu * G)
    sliding = traj.time < stop_time
    t = traj.time[sliding]
    torch.testing.assert_close(x[sliding], v0 * t - 0.5 * mu * G * t * t, atol=1e-12, rtol=0)
    torch.testing.assert_close(x[-1], torch.tensor(v0**2 / (2 * mu * G), dtype=torch.float64), atol=1e-12, rtol=0)
    assert bool((vx >= 0).all()) and bool((vx[1:] <= vx[:-1]).all())  # never reverses, never speeds up
    assert bool((vx[~sliding] == 0).all())
    torch.testing.assert_close(traj.pos[:, 0, 1], torch.full_like(x, 0.1))


def test_friction_gradient_before_and_after_the_stop():
    mu = torch.tensor([0.4], dtype=torch.float64, requires_grad=True)
    v0 = 3.0
    s0 = state([[0.0, 0.1, 0.0]], [[v0, 0.0, 0.0]])
    traj = RigidBodies().rollout(replace(make_params(sphere=False), friction=mu), s0, 45, DT)
    t_early = traj.time[10]
    early, = torch.autograd.grad(traj.pos[10, 0, 0], mu, retain_graph=True)
    late, = torch.autograd.grad(traj.pos[-1, 0, 0], mu)
    torch.testing.assert_close(early, (-0.5 * G * t_early**2).reshape(1))
    torch.testing.assert_close(late, torch.tensor([-(v0**2) / (2 * 0.4**2 * G)], dtype=torch.float64))


def test_elastic_bounce_keeps_its_energy():
    engine = RigidBodies(substeps=2)
    traj = engine.rollout(make_params(restitution=1.0), state([[0.0, 1.0, 0.0]]), 90, DT)  # ~4 bounces
    height = traj.pos[:, 0, 1] - 0.1
    energy = 0.5 * traj.vel[:, 0, 1] ** 2 + G * height
    assert int(((traj.vel[1:, 0, 1] > 0) & (traj.vel[:-1, 0, 1] < 0)).sum()) >= 3
    assert float((energy - energy[0]).abs().max()) <= 1e-9 * float(energy[0])
    assert float(height.min()) >= 0.0


def test_bounce_matches_the_analytic_first_bounce():
    e, h0 = 0.7, 1.0
    traj = RigidBodies(substeps=1).rollout(make_params(restitution=e), state([[0.0, h0 + 0.1, 0.0]]), 40, DT)
    t_hit = math.sqrt(2 * h0 / G)
    v_up = e * G * t_hit
    t = traj.time
    after = (t > t_hit) & (t < t_hit + 2 * v_up / G)
    s = t[after] - t_hit
    torch.testing.assert_close(traj.pos[after, 0, 1], 0.1 + v_up * s - 0.5 * G * s * s, atol=1e-12, rtol=0)


def trajectory_loss(engine, params, s0, target):
    return ((engine.rollout(params, s0, target.shape[0] - 1, DT).pos - target) ** 2).mean()


@pytest.mark.parametrize("guess, sign", [(0.5, -1.0), (0.9, 1.0)])
def test_restitution_gradient_points_to_the_truth(guess, sign):
    s0 = state([[0.0, 1.1, 0.0]], [[0.5, 0.0, 0.0]])
    target = RigidBodies(substeps=16).rollout(make_params(restitution=0.7), s0, 45, DT).pos  # finer ground truth
    e = torch.tensor([guess], dtype=torch.float64, requires_grad=True)
    loss = trajectory_loss(RigidBodies(substeps=2), replace(make_params(), restitution=e), s0, target)
    loss.backward()
    assert float(e.grad) * sign > 0


@pytest.mark.parametrize("guess, sign", [(0.2, -1.0), (0.7, 1.0)])
def test_friction_gradient_points_to_the_truth(guess, sign):
    s0 = state([[0.0, 0.1, 0.0]], [[2.5, 0.0, 1.0]])
    box = make_params(sphere=False, mass=2.0)
    target = RigidBodies(substeps=16).rollout(replace(box, friction=torch.tensor([0.4], dtype=torch.float64)),
                                              s0, 40, DT).pos
    mu = torch.tensor([guess], dtype=torch.float64, requires_grad=True)
    trajectory_loss(RigidBodies(substeps=2), replace(box, friction=mu), s0, target).backward()
    assert float(mu.grad) * sign > 0


def rollout_fn(engine, base, s0, steps, names):
    """f(*tensors) -> every third frame of pos, vel, quat; for gradcheck over the named params and state fields.

    Names ending in 0 ('pos0', 'vel0', 'ang_vel0') are fields of the initial state.
    """
    def f(*values):
        changes = dict(zip(names, values))
        st = s0.replace(**{k[:-1]: v for k, v in changes.items() if k.endswith("0")})
        params = replace(base, **{k: v for k, v in changes.items() if not k.endswith("0")})
        traj = engine.rollout(params, st, steps, DT)
        return traj.pos[::3], traj.vel[::3], traj.quat[::3]

    return f


def inputs(base, s0, names):
    source = {**base.as_dict(), "pos0": s0.pos, "vel0": s0.vel, "ang_vel0": s0.ang_vel}
    return tuple(source[n].clone().requires_grad_() for n in names)


def test_gradients_match_finite_differences_in_flight():
    base = make_params(n=2, mass=1.5, drag=0.3)
    s0 = state([[0.0, 5.0, 0.0], [1.0, 6.0, 0.0]], [[1.0, 2.0, 0.0], [-1.0, 0.0, 0.5]],
               ang_vel=[[0.0, 0.0, 2.0], [1.0, 0.5, 0.0]])
    names = ("mass", "drag", "pos0", "vel0", "ang_vel0")
    f = rollout_fn(RigidBodies(substeps=2), base, s0, 8, names)
    assert torch.autograd.gradcheck(f, inputs(base, s0, names), fast_mode=True)


def test_gradients_match_finite_differences_through_a_bounce_with_friction():
    base = make_params(n=2, restitution=0.6, friction=0.3, drag=0.1)
    s0 = state([[0.0, 0.5, 0.0], [0.0, 0.4, 0.0]], [[2.0, -1.0, 0.0], [0.1, -0.5, 0.05]])  # both bounce
    names = ("restitution", "friction", "mass", "half_extents", "pos0", "vel0")
    f = rollout_fn(RigidBodies(substeps=2), base, s0, 12, names)
    assert torch.autograd.gradcheck(f, inputs(base, s0, names), fast_mode=True)


def test_gradients_match_finite_differences_while_sliding_and_stopped():
    base = make_params(n=2, friction=0.5, drag=0.2, sphere=False)
    s0 = state([[0.0, 0.1, 0.0], [0.0, 0.1, 0.0]], [[1.0, 0.0, 0.5], [0.3, 0.0, 0.0]])  # 2nd stops early
    names = ("friction", "drag", "vel0")
    f = rollout_fn(RigidBodies(substeps=2), base, s0, 10, names)
    assert torch.autograd.gradcheck(f, inputs(base, s0, names), fast_mode=True)


def test_gradients_match_finite_differences_for_a_spinning_box_bouncing():
    base = make_params(sphere=False, restitution=0.5, friction=0.2)
    base = replace(base, half_extents=torch.tensor([[0.3, 0.1, 0.2]], dtype=torch.float64))
    quat = torch.nn.functional.normalize(torch.tensor([[0.9, 0.2, -0.3, 0.25]], dtype=torch.float64), dim=-1)
    s0 = RigidBodies.initial_state([[0.0, 0.6, 0.0]], [[0.5, -1.0, 0.0]], quat=quat,
                                   ang_vel=[[0.3, -0.2, 0.4]], dtype=torch.float64)
    names = ("half_extents", "restitution", "pos0", "ang_vel0")
    f = rollout_fn(RigidBodies(substeps=2), base, s0, 9, names)
    assert torch.autograd.gradcheck(f, inputs(base, s0, names), fast_mode=True)


def test_tilted_box_lands_on_its_corner_height():
    half = 0.5 * math.pi / 4  # 45° about z
    quat = [[math.cos(half), 0.0, 0.0, math.sin(half)]]
    s0 = RigidBodies.initial_state([[0.0, 1.0, 0.0]], quat=quat, dtype=torch.float64)
    params = make_params(sphere=False, restitution=0.0, size=0.2)
    traj = RigidBodies().rollout(params, s0, 30, DT)
    torch.testing.assert_close(traj.pos[-1, 0, 1], torch.tensor(0.2 * math.sqrt(2), dtype=torch.float64))


def test_batched_rollout_equals_one_body_at_a_time():
    params = RigidParams(
        mass=torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64),
        restitution=torch.tensor([0.9, 0.5, 0.0], dtype=torch.float64),
        friction=torch.tensor([0.1, 0.6, 0.3], dtype=torch.float64),
        drag=torch.tensor([0.0, 0.2, 0.1], dtype=torch.float64),
        half_extents=torch.tensor([[0.1] * 3, [0.2, 0.1, 0.3], [0.05] * 3], dtype=torch.float64),
        is_sphere=torch.tensor([True, False, True]),
    )
    s0 = state([[0.0, 1.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.3, 0.0]], [[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 3.0, 1.0]])
    engine = RigidBodies(substeps=3)
    together = engine.rollout(params, s0, 40, DT)
    for b in range(3):
        one = RigidParams(**{k: v[b:b + 1] for k, v in params.as_dict().items() if v is not None})
        alone = engine.rollout(one, RigidBodies.initial_state(s0.pos[b:b + 1], s0.vel[b:b + 1],
                                                                dtype=torch.float64), 40, DT)
        torch.testing.assert_close(together.pos[:, b], alone.pos[:, 0])


@pytest.mark.parametrize("field, value, message", [
    ("mass", -1.0, "mass"),
    ("mass", 0.0, "mass"),
    ("restitution", 1.5, "restitution"),
    ("friction", -0.1, "friction"),
    ("drag", -0.1, "drag"),
])
def test_bad_params_raise_clear_errors(field, value, message):
    with pytest.raises(ValueError, match=message):
        replace(make_params(), **{field: torch.tensor([value], dtype=torch.float64)})


def test_bad_rollout_arguments_raise_clear_errors():
    engine, params, s0 = RigidBodies(), make_params(), state([[0.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match=r"dt \[s\] must be > 0"):
        engine.rollout(params, s0, 10, 0.0)
    with pytest.raises(ValueError, match=r"dt \[s\] must be > 0"):
        engine.step(params, s0, -DT)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        engine.rollout(params, s0, 0, DT)
    with pytest.raises(ValueError, match="substeps"):
        RigidBodies(substeps=0)
    with pytest.raises(ValueError, match="impulse covers 5 frames"):
        engine.rollout(replace(params, impulse=torch.zeros(5, 1, 3, dtype=torch.float64)), s0, 3, DT)
    with pytest.raises(ValueError, match=r"half_extents must have shape \(1, 3\)"):
        replace(params, half_extents=torch.ones(1, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"state.pos must be \(1, 3\) for 1 bodies"):
        engine.rollout(params, state([[0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]), 3, DT)
    with pytest.raises(ValueError, match=r"pos must have shape \(N, 3\)"):
        RigidBodies.initial_state([1.0, 2.0, 3.0])


def recover(make_params_for, truth: float, guess: float, s0, frames: int, lr: float) -> float:
    """Adam on log(theta) for 100 steps against a 16-substep ground truth; returns the estimate."""
    target = RigidBodies(substeps=16).rollout(make_params_for(torch.tensor([truth], dtype=torch.float64)),
                                              s0, frames, DT).pos
    log_theta = torch.tensor([math.log(guess)], dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([log_theta], lr=lr)
    engine = RigidBodies(substeps=2)
    for _ in range(100):
        optimiser.zero_grad()
        trajectory_loss(engine, make_params_for(log_theta.exp()), s0, target).backward()
        optimiser.step()
    return float(log_theta.detach().exp())


@pytest.mark.slow
def test_restitution_is_recovered_within_one_percent_in_100_steps():
    e = recover(lambda v: replace(make_params(), restitution=v), 0.7, 0.4,
                state([[0.0, 1.1, 0.0]], [[0.5, 0.0, 0.0]]), 40, lr=0.05)
    assert abs(e - 0.7) < 0.01 * 0.7


@pytest.mark.slow
def test_friction_is_recovered_within_one_percent_in_100_steps():
    mu = recover(lambda v: replace(make_params(sphere=False), friction=v), 0.4, 0.15,
                 state([[0.0, 0.1, 0.0]], [[2.5, 0.0, 0.0]]), 30, lr=0.05)
    assert abs(mu - 0.4) < 0.01 * 0.4
