"""Damped pendulum: period, energy, decay, gradients vs finite differences, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from runner.physics.base import State
from runner.physics.pendulum import Pendulum, PendulumParams

G = 9.81
DT = 1 / 30


def make_params(length=(1.0,), damping=None) -> PendulumParams:
    length = torch.tensor(length, dtype=torch.float64)
    damping = torch.zeros_like(length) if damping is None else torch.tensor(damping, dtype=torch.float64)
    return PendulumParams(length=length, damping=damping,
                          pivot=torch.zeros(length.shape[0], 3, dtype=torch.float64))


def upward_crossings(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Times [s] where x crosses 0 going up, linearly interpolated between frames."""
    i = torch.nonzero((x[:-1] < 0) & (x[1:] >= 0)).flatten()
    return t[i] + (t[i + 1] - t[i]) * (-x[i]) / (x[i + 1] - x[i])


def test_small_angle_period_is_two_pi_sqrt_l_over_g():
    params = make_params(length=(0.5, 2.0))
    engine = Pendulum(substeps=4)
    traj = engine.rollout(params, Pendulum.initial_state(params, 0.02), 240, DT)
    for b, length in enumerate((0.5, 2.0)):
        crossings = upward_crossings(traj.pos[:, b, 0], traj.time)
        period = (crossings[-1] - crossings[0]) / (len(crossings) - 1)
        assert abs(float(period) - 2 * math.pi * math.sqrt(length / G)) < 1e-3 * period
    torch.testing.assert_close(engine.small_angle_period(params),
                               2 * math.pi * torch.sqrt(params.length / G))


def test_undamped_energy_is_conserved_at_large_amplitude():
    params = make_params(length=(1.0,))
    traj = Pendulum(substeps=4).rollout(params, Pendulum.initial_state(params, 1.2, 0.5), 600, DT)
    energy = 0.5 * (traj.vel[:, 0] ** 2).sum(-1) + G * traj.pos[:, 0, 1]  # per unit mass, pivot at 0
    drift = (energy - energy[0]).abs().max() / (energy[0] + G * 1.0)  # relative to the swing's energy
    assert float(drift) < 2e-3
    assert float((energy[-60:] - energy[0]).abs().max()) <= float((energy[:60] - energy[0]).abs().max()) * 1.5


def test_small_swings_decay_as_exp_minus_b_t_over_two():
    b = 0.4
    params = make_params(length=(1.0,), damping=(b,))
    traj = Pendulum(substeps=4).rollout(params, Pendulum.initial_state(params, 0.0, 0.05), 300, DT)
    angle, _ = Pendulum.angle(params, State(pos=traj.pos[:, 0], vel=traj.vel[:, 0]))
    # peaks of the angle: amplitude ~ A exp(-b t / 2)
    peak = torch.nonzero((angle[1:-1] > angle[:-2]) & (angle[1:-1] > angle[2:])).flatten() + 1
    ratio = angle[peak[-1]] / angle[peak[0]]
    expected = math.exp(-b / 2 * float(traj.time[peak[-1]] - traj.time[peak[0]]))
    assert abs(float(ratio) - expected) < 0.02 * expected


def test_bob_stays_on_the_circle_and_state_round_trips():
    params = PendulumParams(length=torch.tensor([0.8], dtype=torch.float64),
                            damping=torch.tensor([0.1], dtype=torch.float64),
                            pivot=torch.tensor([[0.3, 2.0, -1.0]], dtype=torch.float64))
    s0 = Pendulum.initial_state(params, 0.7, -1.3)
    angle, rate = Pendulum.angle(params, s0)
    torch.testing.assert_close(angle, torch.tensor([0.7], dtype=torch.float64))
    torch.testing.assert_close(rate, torch.tensor([-1.3], dtype=torch.float64))
    traj = Pendulum().rollout(params, s0, 50, DT)
    radius = (traj.pos[:, 0] - params.pivot).norm(dim=-1)
    torch.testing.assert_close(radius, torch.full((51,), 0.8, dtype=torch.float64))
    assert bool((traj.pos[:, 0, 2] == -1.0).all())


def test_gradients_match_finite_differences():
    engine = Pendulum(substeps=3)

    def f(length, damping, pivot, angle, rate):
        params = PendulumParams(length=length, damping=damping, pivot=pivot)
        traj = engine.rollout(params, Pendulum.initial_state(params, angle, rate), 12, DT)
        return traj.pos[::2], traj.vel[::2]

    args = (
        torch.tensor([1.0, 0.4], dtype=torch.float64), torch.tensor([0.3, 0.05], dtype=torch.float64),
        torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.5]], dtype=torch.float64),
        torch.tensor([0.6, -2.5], dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64),
    )
    assert torch.autograd.gradcheck(f, tuple(a.requires_grad_() for a in args), fast_mode=True)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"length \[m\] must be > 0"):
        make_params(length=(-1.0,))
    with pytest.raises(ValueError, match=r"damping \[1/s\] must be >= 0"):
        make_params(damping=(-0.1,))
    with pytest.raises(ValueError, match="pivot"):
        PendulumParams(length=torch.ones(2), damping=torch.zeros(2), pivot=torch.zeros(3))
    params = make_params()
    with pytest.raises(ValueError, match=r"dt \[s\] must be > 0"):
        Pendulum().rollout(params, Pendulum.initial_state(params, 0.1), 5, 0.0)
    with pytest.raises(ValueError, match="substeps"):
        Pendulum(substeps=0)
