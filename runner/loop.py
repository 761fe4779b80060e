"""The generic optimisation loop: one loop for every task.

It owns the optimiser step, gradient clipping, the cadences of logging, evaluation, images and
checkpoints, early stopping on the task's main metric, the guard against non-finite losses and
gradients, an optional moving average of the weights that evaluation sees, and stopping cleanly on
SIGINT/SIGTERM. It knows nothing of what a task computes.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import Tensor

from runner.budget import Budget, parse_duration
from runner.checkpoint import all_finite, rng_state, save_checkpoint, set_rng_state
from runner.distributed import average_gradients, max_over_ranks
from runner.ema import WeightAverage
from runner.errors import ConfigError, Interrupted, NonFiniteError
from runner.logging import Logger
from runner.task import Task

log = logging.getLogger("dwx")


@dataclass(frozen=True)
class LoopSettings:
    """The ``loop`` config group (see configs/loop/default.yaml for each key's meaning)."""

    steps: int = 1000
    epochs: int | None = None
    eval_every: int = 100
    log_every: int = 10
    image_every: int = 250
    checkpoint_every: int = 250
    clip_grad_norm: float | None = None
    ema_decay: float | None = None
    patience: int | None = None
    min_delta: float = 0.0
    nonfinite: str = "stop"
    max_skipped_fraction: float = 0.1
    progress: str = "auto"
    time_budget: float | None = None  # [s]; parsed from e.g. "10m" by from_config

    @staticmethod
    def from_config(cfg) -> LoopSettings:
        early = cfg.get("early_stopping") or {}
        return LoopSettings(
            steps=cfg.steps,
            epochs=cfg.get("epochs"),
            eval_every=cfg.eval_every,
            log_every=cfg.log_every,
            image_every=cfg.image_every,
            checkpoint_every=cfg.checkpoint_every,
            clip_grad_norm=cfg.get("clip_grad_norm"),
            ema_decay=cfg.get("ema_decay"),
            patience=early.get("patience"),
            min_delta=float(early.get("min_delta", 0.0)),
            nonfinite=cfg.nonfinite,
            max_skipped_fraction=float(cfg.max_skipped_fraction),
            progress=cfg.progress,
            time_budget=parse_duration(cfg.get("time_budget")),
        )


@dataclass
class LoopResult:
    """How a run ended: the last evaluation, the optimiser steps taken and the schedule position reached
    (the two differ only when ``loop.time_budget`` compressed the schedules, see runner/budget.py)."""

    metrics: dict[str, float]
    steps: int
    schedule_steps: int
    early_stopped: bool = False
    skipped_steps: int = 0


@dataclass
class _EarlyStopping:
    mode: str
    patience: int | None
    min_delta: float
    best: float | None = None
    bad_evals: int = 0

    def update(self, value: float) -> bool:
        """Record one evaluation; True when patience is exhausted."""
        if self.best is None or self._improves(value):
            self.best, self.bad_evals = value, 0
        else:
            self.bad_evals += 1
        return self.patience is not None and self.bad_evals >= self.patience

    def _improves(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


@dataclass
class StopFlag:
    """Set by the signal handlers; the loop polls it between steps.

    Until the loop starts (``deferred`` False: data generation, set-up, loading a checkpoint) a signal
    raises :class:`Interrupted` at once, as there is no step to finish and nothing to checkpoint.
    """

    signum: int | None = None
    deferred: bool = False
    _previous: dict = field(default_factory=dict)


@contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """SIGINT/SIGTERM stop the run: during set-up at once (:class:`Interrupted`), in the loop by a flag
    (the loop then checkpoints and stops); a second SIGINT aborts at once."""
    flag = StopFlag()

    def handler(signum, frame):
        if flag.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.signum = signum
        if not flag.deferred:
            raise Interrupted(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            flag._previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not in the main thread (e.g. some launchers): no handler, no flag
            pass
    try:
        yield flag
    finally:
        for sig, previous in flag._previous.items():
            signal.signal(sig, previous)


def run_length(settings: LoopSettings, task: Task) -> int:
    """The run's length in steps: ``loop.steps``, or ``loop.epochs`` x the task's steps per epoch. Every schedule
    whose length is null (a scheduler's ``T_max`` / ``total_steps``, a task's fractions via :meth:`Task.plan`)
    spans it."""
    if settings.epochs is None:
        return settings.steps
    per_epoch = task.steps_per_epoch()
    if per_epoch is None:
        raise ConfigError(
            f"loop.epochs: task '{type(task).__name__}' has no dataset to count epochs over; use loop.steps instead"
        )
    return settings.epochs * per_epoch


class Loop:
    """Runs ``task`` for a step budget with ``optimizer``.

    Args:
        task: the task; already ``setup`` on its device.
        optimizer: built on ``task.param_groups()``.
        scheduler: an LR scheduler stepped once per step, or None.
        logger: where scalars and visuals go.
        settings: budget and cadences.
        checkpoint_path: where ``last.pt`` goes, or None to write no checkpoints.
    """

    def __init__(
        self,
        task: Task,
        optimizer: torch.optim.Optimizer,
        scheduler,
        logger: Logger,
        settings: LoopSettings,
        checkpoint_path: Path | None = None,
    ):
        self.task, self.optimizer, self.scheduler, self.logger = task, optimizer, scheduler, logger
        self.settings = settings
        self.checkpoint_path = checkpoint_path
        self.budget = Budget(run_length(settings, task), settings.time_budget)
        self.total_steps = self.budget.steps
        task.plan(self.total_steps)
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.is_lbfgs = isinstance(optimizer, torch.optim.LBFGS)
        self.early = _EarlyStopping(task.mode, settings.patience, settings.min_delta)
        self.ema = None if settings.ema_decay is None else WeightAverage(task, settings.ema_decay)
        self.step = 0  # the schedule position (runner/budget.py): the step count unless a time budget runs ahead
        self.taken = 0  # optimiser steps taken (skipped ones included)
        self.saved_step: int | None = None  # the step held by checkpoints/last.pt, None before the first
        self.skipped = 0
        self.elapsed_before = 0.0  # wall time of earlier segments of a resumed run [s]
        self._t0 = time.perf_counter()
        self._terms: dict[str, Tensor] | None = None
        self._total = torch.zeros(())
        self._grad_norm_max: Tensor | None = None  # the largest global gradient norm since the last log
        self._closing_s = {"evaluate": 0.0, "visuals": 0.0, "checkpoint": 0.0}  # their last durations [s]

    # ------------------------------------------------------------------ state

    @classmethod
    def from_config(cls, cfg, task: Task, logger: Logger, checkpoint_path: Path | None = None,
                    progress: str | None = None) -> Loop:
        """The loop of a composed run config (``cfg.optim``, ``cfg.scheduler``, ``cfg.loop``) for a task that is
        already set up: its optimiser on ``task.param_groups()``, its scheduler over the run's length, and its
        settings, with ``progress`` (``auto`` | ``bar`` | ``lines`` | ``off``) replacing ``loop.progress`` when given.
        """
        from runner.optim import build_optimizer, build_scheduler

        settings = LoopSettings.from_config(cfg.loop)
        if progress is not None:
            settings = LoopSettings(**{**settings.__dict__, "progress": progress})
        optimizer = build_optimizer(cfg.optim, task.param_groups())
        scheduler = build_scheduler(cfg.scheduler, optimizer, run_length(settings, task))
        return cls(task, optimizer, scheduler, logger, settings, checkpoint_path)
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "taken": self.taken,
            "task": self.task.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "optimizer_class": type(self.optimizer).__name__,
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "rng": rng_state(),
            "early_stopping": {"best": self.early.best, "bad_evals": self.early.bad_evals},
            "skipped": self.skipped,
            "elapsed_s": self.wall_time(),
            "ema": None if self.ema is None else self.ema.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        saved_class, this_class = state.get("optimizer_class"), type(self.optimizer).__name__
        if saved_class is not None and saved_class != this_class:
            raise ConfigError(
                f"resume: the checkpoint was written by optimiser {saved_class}, this run uses {this_class}; "
                f"resume with the run's own optim= setting"
            )
        self.task.load_state_dict(state["task"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.early.best = state["early_stopping"]["best"]
        self.early.bad_evals = state["early_stopping"]["bad_evals"]
        self.step = int(state["step"])
        self.taken = int(state.get("taken", self.step))
        self.saved_step = self.step
        self.skipped = int(state["skipped"])
        self.elapsed_before = float(state["elapsed_s"])
        if self.ema is not None:
            if state.get("ema") is None:
                raise ConfigError(
                    "resume: the checkpoint holds no weight average (it was written without loop.ema_decay); "
                    "resume with loop.ema_decay=null"
                )
            self.ema.load_state_dict(state["ema"])

    def evaluated_weights(self):
        """A context in which the task holds the weights that evaluation sees: the average with
        ``loop.ema_decay``, else the trained ones."""
        return nullcontext() if self.ema is None else self.ema.applied()

    def save(self) -> None:
        """Write checkpoints/last.pt, unless a parameter or optimiser state is NaN/Inf: the file always
        holds the last good state (a warning says when it is kept back)."""
        if self.checkpoint_path is None:
            return
        state = self.state_dict()
        if not all_finite([state["task"], state["optimizer"], state["ema"]]):
            log.warning(
                "step %d: the weights, buffers or optimiser state are not finite; checkpoints/last.pt keeps %s",
                self.step,
                self._saved_description(),
            )
            return
        save_checkpoint(self.checkpoint_path, state)
        self.saved_step = self.step

    def _saved_description(self) -> str:
        if self.checkpoint_path is None:
            return "nothing (this run writes no checkpoints)"
        if self.saved_step is None:
            return "nothing (no checkpoint was written before)"
        return f"the state after {self.saved_step} step{'' if self.saved_step == 1 else 's'}"

    # ------------------------------------------------------------------ one step
    def _closure(self) -> Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        terms = self.task.loss(self.step)
        total = sum(terms.values())
        if self._terms is None:  # L-BFGS evaluates the closure several times; log the first
            self._terms = {k: v.detach() for k, v in terms.items()}
            self._total = total.detach()
        if not torch.isfinite(total):
            raise NonFiniteError(self._describe_nonfinite(terms))
        total.backward()
        return total

    def _describe_nonfinite(self, terms: dict[str, Tensor]) -> str:
        bad = [f"loss/{k}={v.item():.4g}" for k, v in terms.items() if not torch.isfinite(v).all()]
        return f"non-finite loss at step {self.step}: {', '.join(bad) or 'the sum overflowed'}"

    def _grad_norm(self) -> Tensor:
        grads = [p.grad for p in self.params if p.grad is not None]
        if self.settings.clip_grad_norm is not None:
            return torch.nn.utils.clip_grad_norm_(self.params, self.settings.clip_grad_norm)
        if not grads:
            return torch.zeros(())
        return torch.nn.utils.get_total_norm(grads)

    def _nonfinite_grad_groups(self) -> list[str]:
        return [
            g.get("name", str(i))
            for i, g in enumerate(self.optimizer.param_groups)
            if any(p.grad is not None and not torch.isfinite(p.grad).all() for p in g["params"])
        ]

    def _backward_and_average(self) -> None:
        """The closure, then (data-parallel) gradients and logged loss terms averaged over the ranks.

        A rank whose loss is not finite still joins the all-reduce (with zero gradients), so that all
        ranks learn of it and stop, or skip the step, together.
        """
        world_size = self.task.world_size
        if world_size <= 1:
            self._closure()
            return
        failed = None
        try:
            self._closure()
        except NonFiniteError as e:
            failed = e
            self.optimizer.zero_grad(set_to_none=True)
        names = list(self._terms)
        values = torch.stack([self._terms[k].reshape(()) for k in names] + [self._total.reshape(())])
        failed_ranks, mean = average_gradients(self.params, world_size, values, loss_failed=failed is not None)
        if failed is not None:
            raise failed
        if failed_ranks:
            raise NonFiniteError(f"non-finite loss at step {self.step} on {failed_ranks} of {world_size} processes")
        self._terms = dict(zip(names, mean[:-1]))
        self._total = mean[-1]

    def _take_step(self) -> bool:
        """One optimiser step; False when it was skipped (non-finite with ``nonfinite=skip``)."""
        self._terms = None
        try:
            if self.is_lbfgs:
                self.optimizer.step(self._closure)
            else:
                self._backward_and_average()
                norm = self._grad_norm()
                if not torch.isfinite(norm):
                    groups = self._nonfinite_grad_groups()
                    raise NonFiniteError(
                        f"non-finite gradient at step {self.step} in parameter group(s) "
                        f"{groups}; loss terms: "
                        + ", ".join(f"loss/{k}={v.item():.4g}" for k, v in self._terms.items())
                    )
                peak = self._grad_norm_max
                self._grad_norm_max = norm if peak is None else torch.maximum(peak, norm)
                self.optimizer.step()
        except NonFiniteError as e:
            if self.settings.nonfinite == "skip":
                log.warning("%s; step skipped (loop.nonfinite=skip)", e)
                self.optimizer.zero_grad(set_to_none=True)
                self.skipped += 1
                self._check_skipped_share()
                return False
            if not self.is_lbfgs:  # no update was made: the parameters are those before the bad step
                self.save()  # (kept back when they are themselves non-finite)
            raise NonFiniteError(
                f"{e}. checkpoints/last.pt holds {self._saved_description()}; lower the learning rate, "
                "set loop.clip_grad_norm, or loop.nonfinite=skip"
            ) from None
        if self.ema is not None:
            self.ema.update()
        return True

    def _advance(self, stepped: bool) -> int:
        """Count the step just taken and move the schedule position (and the LR scheduler with it); returns
        the previous position. A skipped step leaves the scheduler one behind, as without a time budget."""
        previous = self.step
        self.taken += 1
        position = self.budget.position(previous + 1, self.wall_time(), sum(self._closing_s.values()))
        if self.budget.seconds is not None:
            position = max_over_ranks(position)  # the ranks draw their batches from the same position
        self.step = position
        if self.scheduler is not None:
            for _ in range(position - previous - (0 if stepped else 1)):
                self.scheduler.step()
        return previous

    def _check_skipped_share(self) -> None:
        """Fail once more than ``max_skipped_fraction`` of the step budget has been skipped."""
        allowed = self.settings.max_skipped_fraction * self.total_steps
        if self.skipped > allowed:
            raise NonFiniteError(
                f"{self.skipped} of {self.step + 1} steps skipped as non-finite, more than "
                f"loop.max_skipped_fraction={self.settings.max_skipped_fraction} of the {self.total_steps}-step "
                f"budget; checkpoints/last.pt holds {self._saved_description()}. Lower the learning rate or "
                "set loop.clip_grad_norm"
            )

    # ------------------------------------------------------------------ the loop
    def run(self, stop: StopFlag | None = None) -> LoopResult:
        """Run from ``self.step`` (0, or the step of a loaded checkpoint) to the end of the budget."""
        s, task = self.settings, self.task
        stop = stop or StopFlag()
        stop.deferred = True
        metrics: dict[str, float] = {}
        early_stopped = False
        self._t0 = time.perf_counter()
        bar = _progress(s.progress, self.total_steps, self.step)
        quiet = s.progress == "off"
        t_last, taken_last = time.perf_counter(), self.taken
        try:
            while self.step < self.total_steps:
                stepped = self._take_step()
                previous = self._advance(stepped)
                done = self.step
                last = done == self.total_steps
                due = partial(_crossed, previous=previous, position=done)
                logged = False
                if stepped and (due(s.log_every) or last):
                    now = time.perf_counter()
                    scalars = {f"loss/{k}": v.item() for k, v in self._terms.items()}
                    scalars["loss/total"] = self._total.item()
                    scalars["time/step_s"] = (now - t_last) / max(self.taken - taken_last, 1)
                    if self._grad_norm_max is not None:  # before clipping; L-BFGS steps have none
                        scalars["grad/norm_max"] = self._grad_norm_max.item()
                        self._grad_norm_max = None
                    for i, g in enumerate(self.optimizer.param_groups):
                        scalars[f"lr/{g.get('name', i)}"] = g["lr"]
                    self.logger.scalars(scalars, done)
                    t_last, taken_last = now, self.taken
                    logged = True
                if due(s.eval_every) or last:
                    with self._timed("evaluate"):
                        metrics = self._evaluate(done)
                    logged = True
                    if self.early.update(metrics[task.metric]):
                        log.info(
                            "early stopping at step %d: %s has not improved for %d evaluations (best %.4g)",
                            done,
                            task.metric,
                            self.early.bad_evals,
                            self.early.best,
                        )
                        early_stopped = True
                if logged and not quiet:
                    _report(bar, done, self.total_steps, self.taken, self._total.item(), task.metric, metrics)
                if due(s.image_every) or last or early_stopped:
                    with self._timed("visuals"), torch.no_grad(), self.evaluated_weights():
                        task.visuals(self.logger, done)
                if due(s.checkpoint_every) or last or early_stopped:
                    with self._timed("checkpoint"):
                        self.save()
                if stop.signum is not None:
                    self.save()
                    raise Interrupted(stop.signum)
                if early_stopped:
                    break
                if bar is not None:
                    bar.update(done - previous)
            if not metrics:  # resumed at the end of the budget: evaluate what was loaded
                metrics = self._evaluate(self.step)
        finally:
            if bar is not None:
                bar.close()
        return LoopResult(
            metrics=metrics,
            steps=self.taken,
            schedule_steps=self.step,
            early_stopped=early_stopped,
            skipped_steps=self.skipped,
        )

    @contextmanager
    def _timed(self, part: str) -> Iterator[None]:
        """Record how long ``part`` of the run's closing (evaluate, visuals, checkpoint) took this time."""
        t0 = time.perf_counter()
        yield
        self._closing_s[part] = time.perf_counter() - t0

    def wall_time(self) -> float:
        """Wall time of the whole run so far, resumed segments included [s]."""
        return self.elapsed_before + time.perf_counter() - self._t0

    def _evaluate(self, step: int) -> dict[str, float]:
        with torch.no_grad(), self.evaluated_weights():
            metrics = {k: float(v) for k, v in self.task.evaluate().items()}
        if self.task.metric not in metrics:
            raise KeyError(
                f"{type(self.task).__name__}.evaluate() did not return its main metric "
                f"'{self.task.metric}' (got {sorted(metrics)})"
            )
        self.logger.scalars({f"metric/{k}": v for k, v in metrics.items()}, step)
        return metrics


def _crossed(every: int, previous: int, position: int) -> bool:
    """Whether a multiple of ``every`` (a cadence; 0 = never) lies in (previous, position]."""
    return bool(every) and position // every > previous // every


def _progress(mode: str, total: int, start: int):
    """A tqdm bar on a terminal (``auto``) or when asked (``bar``); None means plain log lines."""
    if mode == "bar" or (mode == "auto" and sys.stderr.isatty()):
        from tqdm import tqdm

        return tqdm(total=total, initial=start, dynamic_ncols=True, unit="step", leave=False)
    return None


def _report(bar, done: int, total: int, taken: int, loss: float, metric: str, metrics: dict[str, float]) -> None:
    """The progress bar's text and a run.log line; ``taken`` is named when a time budget ran ahead of it."""
    main = metrics.get(metric)
    text = f"loss {loss:.4g}" + (f"  {metric} {main:.4g}" if main is not None else "")
    if taken != done:
        text += f"  ({taken} steps taken)"
    if bar is not None:
        bar.set_postfix_str(text, refresh=False)
    log.info("step %d/%d  %s", done, total, text, extra={"file_only": bar is not None})  # run.log keeps the curve
