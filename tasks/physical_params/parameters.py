"""The physical parameters an experiment recovers: their prior range, truth and optimisation space.

Each parameter is optimised in an unconstrained, well-conditioned variable ``z`` (as gradSim does for masses
and coefficients, Jatavallabhula et al., ICLR 2021):

* ``space: logit``: ``value = low + (high - low) sigmoid(z)``, so the estimate never leaves the prior range
  (restitution stays in [0, 1], a friction coefficient stays positive);
* ``space: log``: ``value = exp(z)`` for positive quantities spanning orders of magnitude (mass, stiffness),
  where a step in ``z`` is a relative change of the value.

The initial guess is the user's ``init`` or a seeded draw from the central 90 % of the prior range (not from
its edges, where the sigmoid saturates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from runner.errors import ConfigError

Space = Literal["logit", "log"]
_INIT_MARGIN = 0.05  # random initial guesses avoid this fraction of the prior range at each end


@dataclass(frozen=True)
class ParamSpec:
    """One recovered parameter.

    Attributes:
        name: its name in metrics and logs (``rel_err_<name>``, ``param/<name>``).
        low, high: prior range (in the parameter's unit), ``low < high``; ``low > 0`` for ``space: log``.
        truth: the true value used to make the ground truth (and to score the estimate), or None when unknown
            (a user's own video or real tracks).
        space: ``logit`` (bounded) or ``log`` (positive) optimisation variable.
        init: the initial guess, or None for a seeded random draw inside the prior range.
        unit: unit label for logs and reports, e.g. ``kg``.
    """

    name: str
    low: float
    high: float
    truth: float | None = None
    space: Space = "logit"
    init: float | None = None
    unit: str = ""

    def __post_init__(self) -> None:
        where = f"scene.params.{self.name}"
        if not self.low < self.high:
            raise ConfigError(f"{where}: the prior needs low < high, got [{self.low}, {self.high}]")
        if self.space not in ("logit", "log"):
            raise ConfigError(f"{where}.space must be logit or log, got {self.space!r}")
        if self.space == "log" and self.low <= 0:
            raise ConfigError(f"{where}: space=log needs a positive prior, got low={self.low}")
        for key in ("truth", "init"):
            value = getattr(self, key)
            if value is not None and not self.low <= value <= self.high:
                raise ConfigError(f"{where}.{key}={value} lies outside the prior [{self.low}, {self.high}]")
        if self.init is not None and self.space == "logit" and not self.low < self.init < self.high:
            raise ConfigError(f"{where}.init must lie strictly inside the prior ({self.low}, {self.high})")

    @property
    def middle(self) -> float:
        """The middle of the prior range (geometric for ``space: log``): the uninformed baseline guess."""
        return math.sqrt(self.low * self.high) if self.space == "log" else 0.5 * (self.low + self.high)

    def draw(self, generator: torch.Generator) -> float:
        """A random initial value in the central part of the prior (log-uniform for ``space: log``)."""
        u = _INIT_MARGIN + (1 - 2 * _INIT_MARGIN) * float(torch.rand((), generator=generator, dtype=torch.float64))
        if self.space == "log":
            return math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        return self.low + u * (self.high - self.low)

    def to_raw(self, value: float) -> float:
        """The optimisation variable z of a value."""
        if self.space == "log":
            return math.log(value)
        s = (value - self.low) / (self.high - self.low)
        return math.log(s / (1 - s))

    def from_raw(self, raw: Tensor) -> Tensor:
        """The value of the optimisation variable ``raw`` (differentiable)."""
        if self.space == "log":
            return torch.exp(raw)
        return self.low + (self.high - self.low) * torch.sigmoid(raw)


def specs_from_config(params: dict[str, dict]) -> dict[str, ParamSpec]:
    """ParamSpecs from a scene config's ``params: {name: {low, high, truth, space, init, unit}}``."""
    specs = {}
    for name, entry in params.items():
        allowed = {"low", "high", "truth", "space", "init", "unit"}
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise ConfigError(f"scene.params.{name}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
        if "low" not in entry or "high" not in entry:
            raise ConfigError(f"scene.params.{name} needs a prior range: low and high")
        specs[name] = ParamSpec(name=name, **entry)
    return specs


class Estimates(nn.Module):
    """The learnable optimisation variables of the recovered parameters, one scalar ``nn.Parameter`` each.

    Args:
        specs: the parameters by name.
        seed: seeds the random initial guesses (parameters with ``init`` ignore it).
    """

    def __init__(self, specs: dict[str, ParamSpec], seed: int):
        super().__init__()
        self.specs = specs
        generator = torch.Generator().manual_seed(seed)
        self.initial = {}
        for name, spec in specs.items():  # every parameter draws, so one's init does not shift the others' draws
            drawn = spec.draw(generator)
            self.initial[name] = spec.init if spec.init is not None else drawn
        self.raw = nn.ParameterDict(
            {
                name: nn.Parameter(torch.tensor(spec.to_raw(self.initial[name]), dtype=torch.float64))
                for name, spec in specs.items()
            }
        )

    def values(self) -> dict[str, Tensor]:
        """The current estimates by name: () float64 tensors, differentiable in the raw variables."""
        return {name: spec.from_raw(self.raw[name]) for name, spec in self.specs.items()}
