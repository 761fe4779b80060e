"""A run's budget: a step count, optionally capped by wall time.

Every schedule in dwx (learning-rate schedulers, a task's warm-up, coarse phase or sharpening) is written in
steps of ``loop.steps``. With ``loop.time_budget`` the run may not reach that many steps, so the loop
advances a *schedule position* instead of a bare step counter: after each optimiser step the position is

    position = max(steps taken, floor(elapsed / time_budget * steps)), at most ``steps``

and the run ends when it reaches ``steps``; the time its closing evaluation, visuals and checkpoint will take
(as long as they last took) counts as spent, so that the run ends on time with them. On a fast machine the
step count ends the run, as without a budget; on a slower one the position runs ahead of the steps taken, so
that every schedule is compressed onto the steps the time allows and still completes (the warm-up ends, the
coarse phase switches, the cosine reaches its floor) when the time is up. This is budgeted training in the
sense of Li et al. 2020, "Budgeted Training: Rethinking Deep Neural Network Training Under Resource
Constraints": schedules follow the fraction of the budget spent.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from runner.errors import ConfigError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*$")


def parse_duration(value, key: str = "loop.time_budget") -> float | None:
    """Seconds in ``value``: a number of seconds, or a string such as ``90s``, ``10m``, ``1.5h``; None stays None.

    Raises:
        ConfigError: anything else, or a duration that is not positive.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{key}={value}: give a duration such as 600, 90s, 10m or 1.5h")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ConfigError(f"{key}={value!r}: give a duration such as 600 (seconds), 90s, 10m or 1.5h")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{key}={value}: must be a positive duration (or null for none)")
    return seconds


@dataclass(frozen=True)
class Budget:
    """``steps`` optimiser steps, ended early by ``seconds`` of wall time when given (None: no time limit)."""

    steps: int
    seconds: float | None = None

    def position(self, steps_taken: int, elapsed_s: float, closing_s: float = 0.0) -> int:
        """The schedule position after ``steps_taken`` steps and ``elapsed_s`` seconds, in [steps_taken, steps].

        Args:
            closing_s: what the end of the run will take (its last evaluation, visuals and checkpoint, as long
                as they took the previous time) [s]: counted as spent, so that the run ends on time with them.
        """
        if self.seconds is None:
            return min(steps_taken, self.steps)
        by_time = math.floor((elapsed_s + closing_s) / self.seconds * self.steps)
        return min(max(steps_taken, by_time), self.steps)

    def describe(self) -> str:
        """E.g. ``7000 steps`` or ``7000 steps or 540 s, whichever comes first``."""
        if self.seconds is None:
            return f"{self.steps} steps"
        return f"{self.steps} steps or {self.seconds:g} s, whichever comes first"
