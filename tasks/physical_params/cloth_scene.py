"""A cloth hanging from two pinned corners, released at its rest shape: recover spring stiffness and damping.

The cloth is a grid of particles with structural and shear springs (:func:`runner.physics.mass_spring.cloth`),
in the x-y plane facing the camera. Released at rest with every spring at its rest length, it sags under
gravity and oscillates: how far and how fast tells the stiffness [N/m], how quickly the oscillation dies the
dashpot damping [N s/m] (gradSim's cloth experiments, Jatavallabhula et al., ICLR 2021, Sec. 5.2). Rest
lengths, particle masses and the pins are known. Particles are drawn as splats in a checkerboard of two colours.

Damping is identifiable but weakly: with the stiffness at its truth, the pixel loss over damping has its minimum
within 3 % of the true 0.15 N s/m (with or without pixel noise, with the estimator's 8 or the truth's 32
substeps: semi-implicit Euler adds no numerical damping worth the name), but it is ~900x flatter in log damping
than in log stiffness (d²L/d(log c)² ≈ 7e-4 against 0.6 at 64 px, 20 frames). While the stiffness is still far
off, damping hides the mismatch and Adam drives it up (to 0.48 by step 60 from a 7 N/m start); afterwards its
gradient is ~100x smaller, and Adam's default second-moment memory (beta2 = 0.999) keeps the early squares, so
damping creeps back too slowly (100 steps: median relative error 0.53 over 5 seeds, worst 2.2). The scene
therefore runs 200 steps with betas (0.9, 0.9): damping 1.0 % median, 3.3 % worst (``benchmarks/physics.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from runner.errors import ConfigError
from runner.physics.base import SPRINGS
from runner.physics.mass_spring import cloth
from tasks.physical_params.scene import FilmedScene


@dataclass(kw_only=True, eq=False)
class ClothScene(FilmedScene):
    """Args (beyond :class:`FilmedScene`'s):
    rows, cols: particle grid (≥ 2 each); the two top corners are pinned.
    spacing: rest distance between grid neighbours [m].
    particle_mass: mass of each particle [kg].
    origin: (3,) position of the top-left particle [m].
    colors: two RGB colours in [0, 1] of the checkerboard.
    """

    recoverable = ("stiffness", "damping")
    needs = SPRINGS

    rows: int
    cols: int
    spacing: float
    particle_mass: float
    origin: Sequence[float]
    colors: Sequence[Sequence[float]]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rows < 2 or self.cols < 2 or not self.spacing > 0 or not self.particle_mass > 0:
            raise ConfigError("scene: the cloth needs rows, cols >= 2, spacing [m] > 0 and particle_mass [kg] > 0")
        if len(self.colors) != 2:
            raise ConfigError(f"scene.colors must hold two RGB colours, got {len(self.colors)}")
        self.rows, self.cols = int(self.rows), int(self.cols)
        self.origin = torch.tensor(list(self.origin), dtype=torch.float32)
        self.checker = torch.tensor([list(c) for c in self.colors], dtype=torch.float32)  # (2, 3)

    def simulate(self, engine, values, frames):
        params, state = cloth(self.rows, self.cols, self.spacing, self.particle_mass, 1.0, 1.0)
        params = replace(
            params, stiffness=values["stiffness"].to(torch.float32), damping=values["damping"].to(torch.float32)
        )
        state = state.replace(pos=state.pos + self.origin)
        return engine.rollout(params, state, frames - 1, self.dt).pos

    def point_style(self) -> tuple[Tensor, Tensor]:
        r, c = torch.meshgrid(torch.arange(self.rows), torch.arange(self.cols), indexing="ij")
        parity = ((r + c) % 2).reshape(-1)
        return torch.full((self.rows * self.cols,), 0.6 * self.spacing), self.checker[parity]
