"""The optional Warp adapter agrees with the torch mass-spring engine, forward and backward.

Skipped, with the reason printed by ``pytest -ra``, when NVIDIA Warp is not installed; under CI (which installs
the ``warp`` extra) that is a failure.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tests.conftest import missing_tool

try:
    import warp  # noqa: F401
except ImportError:
    missing_tool("NVIDIA Warp is not installed (pip install -e '.[warp]'); the optional Warp adapter is not tested")

from runner.physics.mass_spring import MassSpring, chain, cloth  # noqa: E402
from runner.physics.warp_springs import WarpMassSpring  # noqa: E402

DT = 1 / 30
F64 = torch.float64


@pytest.fixture(scope="module")
def compiled():
    """Compile (or load from Warp's kernel cache) the adapter's kernels once, outside the timed tests."""
    params, s0 = chain(2, 0.1, 0.1, 10.0, 0.0)
    WarpMassSpring(substeps=1).rollout(params, s0, 1, DT)


def scene():
    params, s0 = cloth(4, 4, 0.1, 0.02, 40.0, 0.05, dtype=F64)
    generator = torch.Generator().manual_seed(1)
    params = replace(
        params,
        mass=0.02 + 0.01 * torch.rand(16, generator=generator, dtype=F64),
        stiffness=30.0 + 20.0 * torch.rand(params.edges.shape[0], generator=generator, dtype=F64),
    )
    vel0 = 0.2 * torch.randn(16, 3, generator=generator, dtype=F64) * (~params.pinned)[:, None]
    return params, s0.replace(vel=vel0)


def test_rollout_matches_the_torch_engine(compiled):
    params, s0 = scene()
    ours = WarpMassSpring(substeps=8).rollout(params, s0, 20, DT)
    reference = MassSpring(substeps=8).rollout(params, s0, 20, DT)
    assert ours.pos.shape == reference.pos.shape and ours.pos.dtype == F64
    torch.testing.assert_close(ours.pos, reference.pos, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.vel, reference.vel, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.time, reference.time)


def test_gradients_match_the_torch_engine(compiled):
    params, s0 = scene()
    weights = torch.randn(11, 16, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    grads = []
    for engine in (WarpMassSpring(substeps=8), MassSpring(substeps=8)):
        leaves = [
            t.clone().requires_grad_()
            for t in (params.mass, params.stiffness, params.damping, params.rest_length, s0.pos, s0.vel)
        ]
        p = replace(params, mass=leaves[0], stiffness=leaves[1], damping=leaves[2], rest_length=leaves[3])
        traj = engine.rollout(p, s0.replace(pos=leaves[4], vel=leaves[5]), 10, DT)
        loss = (traj.pos * weights).sum() + 0.1 * (traj.vel * weights).sum()
        grads.append(torch.autograd.grad(loss, leaves))
    for name, ours, reference in zip(("mass", "stiffness", "damping", "rest_length", "pos0", "vel0"), *grads):
        scale = float(reference.abs().max())
        assert float((ours - reference).abs().max()) < 1e-3 * scale, name


def test_step_and_bad_input(compiled):
    params, s0 = scene()
    engine = WarpMassSpring(substeps=4)
    torch.testing.assert_close(engine.step(params, s0, DT).pos, engine.rollout(params, s0, 1, DT).pos[-1])
    with pytest.raises(ValueError, match=r"dt \[s\] must be > 0"):
        engine.rollout(params, s0, 3, 0.0)
    with pytest.raises(ValueError, match="substeps"):
        WarpMassSpring(substeps=0)
