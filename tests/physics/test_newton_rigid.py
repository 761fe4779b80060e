"""The optional Newton engine (physics=newton): agreement with physics=rigid on the rigid scenes, the restitution
it realises, gradients against finite differences, a fit of its own trajectory, and the CLI end to end.

Skipped, with the reason printed by ``pytest -ra``, when Newton is not installed; under CI (which installs the
``newton`` extra) that is a failure.
"""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate

from tests.conftest import compose_config, missing_tool, read_metrics, run_dwx

try:
    import newton  # noqa: F401
except ImportError:
    missing_tool("Newton is not installed (pip install -e '.[newton]'); the optional Newton engine is not tested")

from runner.physics.newton_rigid import NewtonRigid, damping_ratio, restitution_of  # noqa: E402
from runner.physics.rigid import RigidBodies, RigidParams  # noqa: E402

DT = 1 / 30
ENGINE = NewtonRigid()  # the defaults of configs/physics/newton.yaml; its Newton models are reused across tests


def scene(name: str):
    return instantiate(compose_config(["task=physical_params", f"scene={name}"]).scene, _convert_="all")


@pytest.fixture(scope="module")
def compiled():
    """Compile (or load from Warp's kernel cache) Newton's kernels once, outside the timed tests."""
    ENGINE.rollout(params(1, sphere=True), RigidBodies.initial_state([[0.0, 1.0, 0.0]]), 1, DT)


def params(n: int, sphere: bool, mass=0.5, restitution=0.5, friction=0.3, drag=0.0, impulse=None) -> RigidParams:
    def full(value) -> torch.Tensor:
        return torch.as_tensor(value, dtype=torch.float32).expand(n).clone()

    return RigidParams(
        mass=full(mass),
        restitution=full(restitution),
        friction=full(friction),
        drag=full(drag),
        half_extents=torch.full((n, 3), 0.15),
        is_sphere=torch.full((n,), sphere),
        impulse=impulse,
    )


# (scene, tolerance before the first contact [m], tolerance over the whole video [m]); see the test's docstring
AGREEMENT = [
    ("projectile", 0.005, 0.06),
    ("bouncing_ball", 0.005, 0.16),
    ("sliding_block", 0.003, 0.003),
    ("push", 0.003, 0.003),
]


@pytest.mark.parametrize("name, flight_tol, total_tol", AGREEMENT, ids=[a[0] for a in AGREEMENT])
def test_rigid_scenes_agree_with_the_rigid_engine(compiled, name, flight_tol, total_tol):
    """Every rigid scene at its true parameters, all its frames: largest distance of a drawn point [m].

    The tolerances are the models' differences, measured at the defaults (32 substeps, ke = 1e4 N/m), with room
    for rounding. In flight, symplectic Euler lags dwx's exact parabola by ``g t h / 2`` (measured 3.6 mm for the
    projectile, 2.9 mm for the ball before its bounce). A block on the ground sinks by ``m g / (4 ke)`` (0.25 mm
    for 1 kg, 0.9 mm for 3.5 kg) where dwx's does not (measured 1.5 mm sliding, 1.0 mm pushed). A bounce moves a
    ball apart by centimetres: the compliant contact returns it later than dwx's instantaneous impulse (about its
    compression time, 10 ms at 6 m/s) and its realised restitution varies by ±2 % with where the impact falls in
    a substep; the error grows linearly after the bounce (measured 3.4 cm for the projectile's late bounce, 12.4
    cm at the end of the bouncing ball's 45 frames).
    """
    sc = scene(name)
    truth = sc.truth()
    with torch.no_grad():
        ours = sc.simulate(ENGINE, truth, sc.frames)
        reference = sc.simulate(RigidBodies(), truth, sc.frames)
    distance = (ours - reference).norm(dim=-1).amax(dim=-1)  # (T,) worst point per frame
    step = reference[1:, 0, 1] - reference[:-1, 0, 1]  # (T - 1,) height change of the centre
    bounced = ((step[1:] > 1e-9) & (step[:-1] < 0)).nonzero()  # falling, then rising: a bounce
    flight = int(bounced[0]) if len(bounced) else sc.frames  # frames before the first contact (all for the blocks)
    assert float(distance[:flight].max()) <= flight_tol
    assert float(distance.max()) <= total_tol


def test_realised_restitution_is_the_requested_one_within_its_jitter(compiled):
    """24 balls dropped from 2.00 m to 2.02 m (the impact sweeps the position within a substep): the rebound
    speed over the impact speed. Measured at the defaults: the mean is 0.2-2.5 % below e (gravity acts during
    the contact); the largest deviations are 0.067 at e = 0.3, 0.036 at e = 0.72 and 0.007 at e = 0.95 (the
    compression damper switches on at a substep, not at the impact).
    """
    n = 24
    height = 2.0 + torch.linspace(0.0, 0.02, n)
    start = torch.stack([torch.arange(n, dtype=torch.float32), height, torch.zeros(n)], dim=-1)
    for e, spread in ((0.3, 0.08), (0.72, 0.05), (0.95, 0.01)):
        traj = ENGINE.rollout(
            params(n, sphere=True, restitution=e, friction=0.0), RigidBodies.initial_state(start), 24, DT
        )
        y, vy = traj.pos[-1, :, 1], traj.vel[-1, :, 1]  # in flight after the bounce
        realised = torch.sqrt(vy**2 + 2 * 9.81 * (y - 0.15)) / torch.sqrt(2 * 9.81 * (height - 0.15))
        assert abs(float(realised.mean()) - e) <= 0.02, e
        assert float((realised - e).abs().max()) <= spread, e


def test_damping_ratio_inverts_the_restitution_of_the_compression_damper():
    e = torch.tensor([0.0, 0.05, 0.3, math.exp(-1.0), 0.5, 0.72, 0.95, 1.0], dtype=torch.float64, requires_grad=True)
    zeta = damping_ratio(e)
    zeta_values = zeta.detach()
    assert float(zeta_values[0]) == math.inf and float(zeta_values[-1]) == pytest.approx(0.0, abs=1e-12)
    assert float(zeta_values[3]) == pytest.approx(1.0, abs=1e-6)  # critical damping returns 1 / e of the speed
    torch.testing.assert_close(restitution_of(zeta[1:].detach()), e[1:].detach(), atol=1e-9, rtol=0)
    zeta[1:].sum().backward()
    eps = 1e-6
    numeric = (damping_ratio(e.detach()[1:-1] + eps) - damping_ratio(e.detach()[1:-1] - eps)) / (2 * eps)
    torch.testing.assert_close(e.grad[1:-1], numeric, rtol=1e-5, atol=0)
    assert float(e.grad[0]) == 0.0  # e = 0 is the strongest damper the substep allows; no derivative


# (scene, recovered parameter, value at which the derivative is checked, frames)
GRADIENTS = [
    ("bouncing_ball", "restitution", 0.72, 45),  # through the one bounce in the video
    ("sliding_block", "friction", 0.32, 40),  # sliding, stopping and at rest
    ("push", "mass", 3.5, 30),  # Δv = J / m, then Coulomb friction
]


@pytest.mark.parametrize("name, param, value, frames", GRADIENTS, ids=[g[0] for g in GRADIENTS])
def test_gradients_of_recovered_parameters_match_finite_differences(compiled, name, param, value, frames):
    """d(random projection of the scene's points)/d(parameter) from Newton's tape against a central difference
    of step 1e-2 (Newton computes in float32). Measured: 1.5 % (restitution), 0.3 % (friction), 0.02 % (mass)."""
    sc = scene(name)
    weights = torch.randn(frames, 1 if sc.shape == "sphere" else 8, 3, generator=torch.Generator().manual_seed(0))

    def loss(x: torch.Tensor) -> torch.Tensor:
        return (sc.simulate(ENGINE, {param: x}, frames) * weights).sum()

    x = torch.tensor(value, requires_grad=True)
    (tape,) = torch.autograd.grad(loss(x), x)
    eps = 1e-2
    with torch.no_grad():
        numeric = (loss(torch.tensor(value + eps)) - loss(torch.tensor(value - eps))) / (2 * eps)
    assert float(tape) == pytest.approx(float(numeric), rel=0.03)


def test_gradients_of_the_initial_state_match_finite_differences_in_flight_and_sliding(compiled):
    """Initial velocity of the projectile (speed, angle) before its bounce and of a block sliding to a stop:
    cosine similarity of the tape's gradient and central differences (step 1e-2) above 0.999.

    Through a bounce, an initial-state change moves the impact within a substep and with it the realised
    restitution (see the module doc): the tape differentiates that jitter (projectile speed over 30 frames:
    -3.53 from the tape, -3.60 from a step of 1e-3) while a step of 1e-2 averages it out (+0.33); so this test
    stops before the bounce.
    """
    projectile = scene("projectile")
    weights = torch.randn(20, 1, 3, generator=torch.Generator().manual_seed(1))

    def flight(x: torch.Tensor) -> torch.Tensor:
        return (projectile.simulate(ENGINE, {"speed": x[0], "angle": x[1]}, 20) * weights).sum()

    s0 = RigidBodies.initial_state([[-1.5, 0.15, 0.0]], [[3.0, 0.0, 0.5]])
    box = params(1, sphere=False, mass=1.0, restitution=0.0, friction=0.32)
    slide_weights = torch.randn(41, 1, 3, generator=torch.Generator().manual_seed(2))

    def sliding(x: torch.Tensor) -> torch.Tensor:
        return (ENGINE.rollout(box, s0.replace(vel=x[None]), 40, DT).pos * slide_weights).sum()

    for f, x0 in ((flight, torch.tensor([4.2, 58.0])), (sliding, s0.vel[0])):
        x = x0.clone().requires_grad_()
        (tape,) = torch.autograd.grad(f(x), x)
        eps, numeric = 1e-2, torch.zeros_like(x0)
        with torch.no_grad():
            for i in range(x0.numel()):
                step = torch.zeros_like(x0)
                step[i] = eps
                numeric[i] = (f(x0 + step) - f(x0 - step)) / (2 * eps)
        assert float(torch.nn.functional.cosine_similarity(tape, numeric, dim=0)) > 0.999


def test_friction_is_recovered_from_a_newton_trajectory(compiled):
    """A block launched at 3 m/s, 20 frames simulated by Newton with μ = 0.32; L-BFGS on log μ from 0.15 reaches
    the truth to 1e-3 relative (measured 1e-5, in 7 rollouts)."""
    s0 = RigidBodies.initial_state([[-1.5, 0.15, 0.0]], [[3.0, 0.0, 0.0]])

    def block(mu: torch.Tensor) -> RigidParams:
        return params(1, sphere=False, mass=1.0, restitution=0.0, friction=mu)

    with torch.no_grad():
        target = ENGINE.rollout(block(torch.tensor(0.32)), s0, 20, DT).pos
    log_mu = torch.tensor(math.log(0.15), requires_grad=True)
    optimiser = torch.optim.LBFGS([log_mu], lr=1.0, max_iter=12, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = ((ENGINE.rollout(block(log_mu.exp()), s0, 20, DT).pos - target) ** 2).mean()
        loss.backward()
        return loss

    optimiser.step(closure)
    assert float(log_mu.detach().exp()) == pytest.approx(0.32, rel=1e-3)


def test_impulse_drag_batch_and_bad_input(compiled):
    impulse = torch.zeros(2, 2, 3)
    impulse[1, :, 0] = 2.0  # before frame 1, +x
    p = params(2, sphere=False, mass=torch.tensor([2.0, 0.5]), restitution=0.0, friction=0.0, impulse=impulse)
    s0 = RigidBodies.initial_state([[0.0, 0.15, 0.0], [1.0, 0.15, 0.0]])
    traj = ENGINE.rollout(p, s0, 3, DT)
    assert traj.pos.shape == (4, 2, 3) and traj.quat.shape == (4, 2, 4) and traj.time.shape == (4,)
    torch.testing.assert_close(traj.vel[1, :, 0], torch.zeros(2))
    torch.testing.assert_close(traj.vel[2, :, 0], torch.tensor([1.0, 4.0]), atol=1e-4, rtol=0)  # J / m, frictionless
    # drag alone in flight: v(t) = v0 exp(-c t / m) to first order in the substep
    flying = ENGINE.rollout(
        params(1, sphere=True, mass=0.5, drag=0.2),
        RigidBodies.initial_state([[0.0, 9.0, 0.0]], [[2.0, 0.0, 0.0]]),
        10,
        DT,
    )
    assert float(flying.vel[-1, 0, 0]) == pytest.approx(2.0 * math.exp(-0.4 * 10 * DT), rel=1e-3)
    with pytest.raises(ValueError, match=r"dt \[s\] must be > 0"):
        ENGINE.rollout(p, s0, 3, 0.0)
    with pytest.raises(ValueError, match="impulse covers 2 frames"):
        ENGINE.rollout(p, s0, 1, DT)
    with pytest.raises(ValueError, match=r"too stiff for 2 substeps .* use substeps >= "):
        NewtonRigid(substeps=2).rollout(p, s0, 3, DT)
    with pytest.raises(ValueError, match="contact_ke"):
        NewtonRigid(contact_ke=0.0)


@pytest.mark.slow
def test_cli_runs_a_rigid_scene_on_newton(tmp_path):
    run_dir = tmp_path / "run"
    out = run_dwx(
        "run",
        "task=physical_params",
        "scene=sliding_block",
        "physics=newton",
        "experiment=physics_tiny",
        "loop.steps=2",
        "loop.eval_every=2",
        "logger=none",
        f"hydra.run.dir={run_dir}",
    )
    assert out.returncode == 0, out.stderr
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and "physics=newton" in metrics["overrides"]
    assert math.isfinite(metrics["metrics"]["friction"]) and metrics["metrics"]["friction_true"] == 0.32
