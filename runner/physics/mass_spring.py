"""Particles joined by damped springs (a chain or a cloth grid) with pinned points, under gravity.

Conventions: +y up, gravity ``-g`` along y. There is no ground and no self-collision. Spring s joins particles
``edges[s, 0]`` and ``edges[s, 1]``; with ``d = x_j - x_i``, ``l = |d|`` and ``u = d / l`` it pulls particle i with
``f = (k (l - l0) + c (v_j - v_i) · u) u`` and particle j with ``-f`` (a Hookean spring with a dashpot along it).
Pinned particles keep their velocity from the state (zero for a fixed pin) and feel no force.

Integration: semi-implicit (symplectic) Euler, ``v ← v + h F / m``, ``x ← x + h v`` (as in DiffTaichi's
mass-spring example, Hu et al., ICLR 2020). It conserves a modified energy when undamped, but it is only
conditionally stable: use ``h < 2 √(m / k_eff)``, i.e. enough substeps for stiff springs. Topology (edges,
rest lengths, pins) lives in :class:`SpringParams` next to the coefficients; spring forces are gathered and
scattered with index operations (no dense incidence matrix, whose skinny matmuls are slow on the CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from runner.physics.base import SPRINGS, PhysParams, State, Trajectory, check_engine_args, check_rollout_args


@dataclass(frozen=True)
class SpringParams(PhysParams):
    """The model of N particles and S springs.

    Attributes:
        mass: (N,) particle masses [kg], > 0.
        stiffness: (S,) or () spring stiffness k [N/m], ≥ 0.
        damping: (S,) or () dashpot coefficient c along each spring [N s/m], ≥ 0.
        rest_length: (S,) rest lengths l0 [m], ≥ 0.
        edges: (S, 2) int64 particle indices of each spring.
        pinned: (N,) bool, True for particles that move only with their initial velocity.
    """

    mass: Tensor
    stiffness: Tensor
    damping: Tensor
    rest_length: Tensor
    edges: Tensor
    pinned: Tensor

    def __post_init__(self) -> None:
        n, s = self.mass.shape[0], self.edges.shape[0]
        if self.mass.dim() != 1 or self.pinned.shape != (n,) or self.pinned.dtype != torch.bool:
            raise ValueError(f"SpringParams: mass must be (N,) and pinned (N,) bool; got {tuple(self.mass.shape)}, "
                             f"{tuple(self.pinned.shape)} {self.pinned.dtype}")
        if self.edges.shape != (s, 2) or self.edges.dtype != torch.int64 or self.rest_length.shape != (s,):
            raise ValueError(f"SpringParams: edges must be (S, 2) int64 and rest_length (S,); got "
                             f"{tuple(self.edges.shape)} {self.edges.dtype}, {tuple(self.rest_length.shape)}")
        for name in ("stiffness", "damping"):
            if getattr(self, name).shape not in ((), (s,)):
                raise ValueError(f"SpringParams.{name} must be () or ({s},), got {tuple(getattr(self, name).shape)}")
        bad_edges = s and (int(self.edges.min()) < 0 or int(self.edges.max()) >= n
                           or bool((self.edges[:, 0] == self.edges[:, 1]).any()))
        if bad_edges:
            raise ValueError(f"SpringParams.edges must join two different particles in [0, {n})")
        checks = (
            (self.mass <= 0, "mass [kg] must be > 0"),
            (self.stiffness < 0, "stiffness [N/m] must be >= 0"),
            (self.damping < 0, "damping [N s/m] must be >= 0"),
            (self.rest_length < 0, "rest_length [m] must be >= 0"),
        )
        for bad, message in checks:
            if bool(bad.any()):
                raise ValueError(f"SpringParams: {message}")


class MassSpring:
    """Damped springs between particles, semi-implicit Euler (see module doc).

    Args:
        substeps: integration substeps per frame (≥ 1); stiff springs need more, a finer ground truth too.
        gravity: gravitational acceleration g [m/s²] ≥ 0, acting along -y.
    """

    capabilities = frozenset({SPRINGS})

    def __init__(self, substeps: int = 10, gravity: float = 9.81):
        check_engine_args("MassSpring", substeps, gravity)
        self.substeps = substeps
        self.gravity = gravity

    @staticmethod
    def initial_state(
        pos: Tensor | list, vel: Tensor | list | None = None, dtype: torch.dtype = torch.float32
    ) -> State:
        """A state from (N, 3) positions [m] and velocities [m/s] (zeros by default)."""
        pos = torch.as_tensor(pos, dtype=dtype)
        vel = torch.zeros_like(pos) if vel is None else torch.as_tensor(vel, dtype=pos.dtype)
        if pos.dim() != 2 or pos.shape[-1] != 3 or vel.shape != pos.shape:
            raise ValueError(f"MassSpring.initial_state: pos and vel must be (N, 3), got {tuple(pos.shape)} "
                             f"and {tuple(vel.shape)}")
        return State(pos=pos, vel=vel)

    def step(self, params: SpringParams, state: State, dt: float) -> State:
        """Advance one frame of ``dt`` [s] in ``substeps`` substeps.

        Args:
            params: N particles, S springs.
            state: positions (N, 3) [m] and velocities (N, 3) [m/s].
            dt: frame length [s], > 0.
        """
        check_rollout_args(1, dt)
        return self._frames(params, state, 1, dt)[-1]

    def rollout(self, params: SpringParams, state0: State, steps: int, dt: float) -> Trajectory:
        """``steps`` frames of ``dt`` [s]; returns pos and vel (steps + 1, N, 3) and time (steps + 1,) [s]."""
        check_rollout_args(steps, dt)
        return Trajectory.from_states(self._frames(params, state0, steps, dt), dt)

    def _frames(self, params: SpringParams, state0: State, steps: int, dt: float) -> list[State]:
        """The initial state and ``steps`` frames; operators are built once for the whole rollout."""
        pos, vel = state0.pos, state0.vel
        if pos.shape != (params.mass.shape[0], 3):
            raise ValueError(f"MassSpring: state.pos must be ({params.mass.shape[0]}, 3) for "
                             f"{params.mass.shape[0]} particles, got {tuple(pos.shape)}")
        i, j = params.edges[:, 0], params.edges[:, 1]
        ends = torch.cat([i, j])  # (2 S,) where the pulls (+ on i, - on j) land
        free = (~params.pinned).to(pos.dtype)[:, None]
        h = dt / self.substeps
        h_inv_mass = h * free / params.mass[:, None]  # (N, 1) [s/kg]; 0 for pins, which feel no force
        h_gravity = h * free * torch.tensor([0.0, -self.gravity, 0.0], dtype=pos.dtype, device=pos.device)
        stiffness, damping = params.stiffness[..., None], params.damping[..., None]  # (S, 1) or (1,)
        rest_length = params.rest_length[:, None]
        zeros = torch.zeros_like(pos)
        states = [state0]
        for _ in range(steps):
            for _ in range(self.substeps):
                ends_state = torch.cat([pos, vel], dim=1)
                diff = ends_state[j] - ends_state[i]  # (S, 6): x_j - x_i [m], v_j - v_i [m/s]
                length = diff[:, :3].norm(dim=-1, keepdim=True)
                unit = diff[:, :3] / length
                extension_rate = (diff[:, 3:] * unit).sum(-1, keepdim=True)  # (S, 1) [m/s]
                pull = (stiffness * (length - rest_length) + damping * extension_rate) * unit  # on i [N]
                force = zeros.index_add(0, ends, torch.cat([pull, -pull]))  # (N, 3) [N]
                vel = vel + h_gravity + force * h_inv_mass
                pos = pos + h * vel
            states.append(State(pos=pos, vel=vel))
        return states


def chain(
    num: int, spacing: float, mass: float, stiffness: float, damping: float, pin_first: bool = True,
    dtype: torch.dtype = torch.float32,
) -> tuple[SpringParams, State]:
    """A horizontal chain of ``num`` particles along +x at height 0, at rest, its first particle pinned.

    Args:
        num: particles (≥ 2).
        spacing: rest distance between neighbours [m].
        mass: each particle's mass [kg].
        stiffness: spring stiffness [N/m].
        damping: dashpot coefficient [N s/m].
        pin_first: pin particle 0.
        dtype: tensor dtype.
    """
    if num < 2:
        raise ValueError(f"chain: num must be >= 2, got {num}")
    pos = torch.zeros(num, 3, dtype=dtype)
    pos[:, 0] = torch.arange(num, dtype=dtype) * spacing
    edges = torch.stack([torch.arange(num - 1), torch.arange(1, num)], dim=-1)
    pinned = torch.zeros(num, dtype=torch.bool)
    pinned[0] = pin_first
    return _network(pos, edges, pinned, mass, stiffness, damping)


def cloth(
    rows: int, cols: int, spacing: float, mass: float, stiffness: float, damping: float,
    dtype: torch.dtype = torch.float32,
) -> tuple[SpringParams, State]:
    """A vertical cloth in the x-y plane hanging from its two top corners, at rest.

    Particles are on a ``rows x cols`` grid (row 0 at y = 0, rows going down along -y), with structural springs
    to the right and down neighbours and shear springs along both diagonals.

    Args:
        rows, cols: grid size (≥ 2 each).
        spacing: grid spacing [m].
        mass: each particle's mass [kg].
        stiffness: stiffness of every spring [N/m].
        damping: dashpot coefficient of every spring [N s/m].
        dtype: tensor dtype.
    """
    if rows < 2 or cols < 2:
        raise ValueError(f"cloth: rows and cols must be >= 2, got {rows} x {cols}")
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    pos = torch.stack([c * spacing, -r * spacing, torch.zeros_like(r)], dim=-1).reshape(-1, 3).to(dtype)
    index = (r * cols + c)
    edges = torch.cat([
        torch.stack([index[:, :-1], index[:, 1:]], -1).reshape(-1, 2),  # horizontal
        torch.stack([index[:-1, :], index[1:, :]], -1).reshape(-1, 2),  # vertical
        torch.stack([index[:-1, :-1], index[1:, 1:]], -1).reshape(-1, 2),  # diagonal
        torch.stack([index[:-1, 1:], index[1:, :-1]], -1).reshape(-1, 2),  # anti-diagonal
    ])
    pinned = torch.zeros(rows * cols, dtype=torch.bool)
    pinned[0] = pinned[cols - 1] = True
    return _network(pos, edges, pinned, mass, stiffness, damping)


def _network(
    pos: Tensor, edges: Tensor, pinned: Tensor, mass: float, stiffness: float, damping: float
) -> tuple[SpringParams, State]:
    """Params with rest lengths taken from ``pos`` (N, 3) [m], and the state at rest there."""
    rest = (pos[edges[:, 1]] - pos[edges[:, 0]]).norm(dim=-1)
    params = SpringParams(
        mass=torch.full((pos.shape[0],), mass, dtype=pos.dtype),
        stiffness=torch.tensor(stiffness, dtype=pos.dtype),
        damping=torch.tensor(damping, dtype=pos.dtype),
        rest_length=rest,
        edges=edges,
        pinned=pinned,
    )
    return params, State(pos=pos, vel=torch.zeros_like(pos))
