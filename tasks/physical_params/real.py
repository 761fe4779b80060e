"""A real pendulum: the motion-tracked pendulum of Schmidt & Lipson, fitted by the damped pendulum model.

Data: M. Schmidt & H. Lipson, "Distilling free-form natural laws from experimental data", Science 324:81
(2009), as redistributed by tiny-differentiable-simulator (``real_pend_h_1.txt``: time [s], angle θ [rad]
and its rate ω [rad/s], sampled at 6 Hz with a few gaps). There are no pixels, only the tracked angle, and
the physical constants were not published; what the data fixes is the period and the decay of the swing.

The model is :class:`runner.physics.pendulum.Pendulum` (``θ'' = -(g / L) sin θ - b θ'``) started from the
first sample's angle and rate; with g known, the angle track determines the length L [m] (the large-swing
period grows with amplitude, which the model reproduces) and the damping rate b [1/s]. Reported beside them:
the period of the fitted model and the period measured directly from the data, both as the mean interval
between upward zero crossings at the data's own sample times, their relative difference ``rel_err_period``,
and the fit's RMS residual [rad].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from runner.errors import ConfigError, InputError
from runner.physics.base import PENDULUM
from runner.physics.pendulum import PendulumParams
from tasks.physical_params.pendulum_scene import pendulum_model
from tasks.physical_params.scene import Observation, Scene

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def read_angle_track(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time [s], angle [rad] and angular rate [rad/s] columns of a Schmidt–Lipson pendulum file.

    The format is whitespace-separated text after a ``%`` header: trial id, time, θ, ω (``real_pend_h``); a
    relative path is relative to the project root.
    """
    path = Path(path).expanduser()
    path = path if path.is_absolute() else PROJECT_ROOT / path
    if not path.is_file():
        raise InputError(
            f"scene.path={path}: no such file; point it at real_pend_h_1.txt of the "
            "Schmidt-Lipson data (../shared/data/physics/schmidt_lipson_real/)"
        )
    try:
        table = np.loadtxt(path, comments="%", ndmin=2)
    except ValueError as e:
        raise InputError(f"scene.path={path}: not a table of numbers ({e})") from e
    if table.shape[1] < 4 or table.shape[0] < 10:
        raise InputError(f"scene.path={path}: need >= 10 rows of (id, t, theta, omega), got {table.shape}")
    t, theta, omega = table[:, 1], table[:, 2], table[:, 3]
    if not np.all(np.diff(t) > 0):
        raise InputError(f"scene.path={path}: the time column must increase")
    return t, theta, omega


def zero_crossing_period(t: np.ndarray, theta: np.ndarray) -> float:
    """Mean interval [s] between successive upward zero crossings of θ(t) (linear interpolation between samples).

    Returns NaN when θ crosses zero upwards fewer than twice.
    """
    i = np.nonzero((theta[:-1] < 0) & (theta[1:] >= 0))[0]
    if len(i) < 2:
        return math.nan
    crossings = t[i] - theta[i] * (t[i + 1] - t[i]) / (theta[i + 1] - theta[i])
    return float(np.mean(np.diff(crossings)))


@dataclass(kw_only=True, eq=False)
class RealPendulum(Scene):
    """The recorded pendulum as a scene: recover length [m] and damping rate [1/s] from the angle track.

    Its observations are the recorded angles (``task.observe`` does not apply). The simulation steps at the
    recording's nominal rate ``fps``; each sample is compared with the frame nearest its time stamp.

    Args:
        params: ``length`` and ``damping`` priors (their truth is unknown: null).
        path: the recording (a relative path is relative to the project root).
        fps: nominal sample rate [1/s]; every time stamp must lie on this grid (gaps are allowed).
        duration_s: fit only the first ``duration_s`` seconds, or None for the whole recording.
    """

    recoverable = ("length", "damping")
    needs = PENDULUM

    path: str
    fps: float = 6.0
    duration_s: float | None = None
    frames: int = field(init=False)  # the recording's length on the ``fps`` grid

    def __post_init__(self) -> None:
        t, theta, omega = read_angle_track(self.path)
        if self.duration_s is not None:
            keep = t - t[0] <= self.duration_s
            t, theta, omega = t[keep], theta[keep], omega[keep]
        index = np.round((t - t[0]) * self.fps).astype(np.int64)
        off_grid = np.abs((t - t[0]) * self.fps - index) > 0.25
        if off_grid.any():
            raise InputError(
                f"scene.path={self.path}: time stamp {t[off_grid][0]:.4f} s is not on the {self.fps} Hz grid; "
                "set scene.fps to the recording's sample rate"
            )
        self.frames = int(index[-1]) + 1
        super().__post_init__()
        if len(index) < 10:
            raise ConfigError(f"scene.duration_s={self.duration_s} keeps {len(index)} samples; fit at least 10")
        self.time, self.theta = t, theta
        self.index = torch.from_numpy(index)
        self.angle0, self.rate0 = float(theta[0]), float(omega[0])

    def model(self, values: dict[str, Tensor]) -> PendulumParams:
        return pendulum_model(values, torch.zeros(1, 3))

    def simulate(self, engine, values, frames):
        params = self.model(values)
        state = engine.initial_state(params, self.angle0, self.rate0)
        return engine.rollout(params, state, frames - 1, self.dt).pos

    def observe(self, renderer, positions: Tensor, kind: Observation, supersample: int = 1) -> Tensor:
        """(S', 1, 1) angles [rad] of the samples that fall within the simulated frames (pivot at the origin)."""
        index = self.index[self.index < positions.shape[0]]
        bob = positions[index, 0]
        return torch.atan2(bob[:, 0], -bob[:, 1])[:, None, None]

    def recorded(self) -> Tensor:
        return torch.tensor(self.theta, dtype=torch.float32)[:, None, None]

    def report(self, values, engine):
        """Period of the fit and of the data [s], their relative difference, small-angle period, RMS residual."""
        with torch.no_grad():
            angles = self.observe(None, self.simulate(engine, values, self.frames), "tracks2d")[:, 0, 0].numpy()
        measured = zero_crossing_period(self.time, self.theta)
        period = zero_crossing_period(self.time, angles)
        return {
            "period": period,
            "period_measured": measured,
            "rel_err_period": abs(period - measured) / measured,
            "small_angle_period": float(engine.small_angle_period(self.model(values))[0]),
            "residual_rad": float(np.sqrt(np.mean((angles - self.theta) ** 2))),
        }
