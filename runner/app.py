"""The Hydra job: compose -> instantiate -> run the loop -> write the run folder.

One call of :func:`run_job` is one run (or one job of a multirun). It never lets a failure go
unrecorded: metrics.json gets status ``failed`` with the error, and TensorBoard events are flushed.
"""

from __future__ import annotations

import logging
import math
import os
import random
import sys
import time
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from runner.distributed import (
    RankRecord,
    check_data_parallel,
    destroy_process_group,
    from_environment,
    init_process_group,
)
from runner.errors import Interrupted, exception_chain, find_cause, find_user_error, first_line
from runner.logging import NullLogger
from runner.record import RunRecord, earlier_start, main_metric_value

log = logging.getLogger("dwx")


def threads_per_job(launcher: DictConfig, cores: int) -> int | None:
    """Torch threads for one job of a sweep whose jobs run side by side on this machine.

    With Hydra's joblib launcher, ``cores // parallel jobs`` (at least 1), so that the jobs do not
    oversubscribe the CPU; joblib's ``n_jobs=-1`` means one job per core, ``-2`` all cores but one.
    None (torch's default) for every other launcher.
    """
    if not str(launcher.get("_target_", "")).endswith(".JoblibLauncher"):
        return None
    n_jobs = int(launcher.n_jobs)
    parallel = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
    return max(1, cores // parallel)


def configure_torch(cfg: DictConfig, threads: int | None = None):
    """Seed every generator, set threads, determinism and malloc tuning, and return the chosen device.

    ``threads`` (e.g. :func:`threads_per_job`) is used when ``cfg.threads`` is null or ``auto``; otherwise
    ``auto`` takes the cores that are free now (:func:`runner.cpu_load.auto_threads`), unless
    OMP_NUM_THREADS says how many, and null leaves torch's default.
    """
    import numpy as np
    import torch

    from runner.errors import ConfigError
    from runner.malloc import tune_malloc

    if cfg.malloc_tuning:
        tune_malloc()

    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)  # noqa: NPY002 (users' code may draw from the global generator)
    torch.manual_seed(cfg.seed)
    if cfg.threads == "auto" and threads is None and "OMP_NUM_THREADS" not in os.environ:
        from runner.cpu_load import auto_threads

        threads = auto_threads(len(os.sched_getaffinity(0)))
    elif isinstance(cfg.threads, int):
        threads = cfg.threads
    if threads is not None:
        torch.set_num_threads(threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={cfg.device} but CUDA is not available here; use device=cpu or device=auto")
    return torch.device(cfg.device)


def hparams_from_overrides(overrides: list[str]) -> dict[str, str | float | int | bool]:
    """The run's command-line overrides as TensorBoard hparams (``optim.lr=0.01`` -> {"optim.lr": 0.01})."""
    params = {}
    for item in overrides:
        key, _, value = item.lstrip("+~").partition("=")
        if key in ("resume",) or key.startswith("hydra."):
            continue
        try:
            parsed = yaml.safe_load(value) if value else value
        except yaml.YAMLError:
            parsed = value
        params[key] = parsed if isinstance(parsed, (int, float, str, bool)) else str(parsed)
    return params


def _stops_the_sweep(launcher: DictConfig) -> bool:
    """Whether a signal to a job of this sweep should stop the whole sweep (exit non-zero).

    True for launchers whose jobs run on this machine under the user's hand (Hydra's basic launcher,
    joblib). A SLURM job gets SIGTERM when it is pre-empted or requeued: it only stops itself.
    """
    return "submitit" not in str(launcher.get("_target_", ""))


def run_job(cfg: DictConfig) -> float:
    """Run one experiment; returns the task's main metric (NaN for a failed job of a multirun)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from runner.checkpoint import remove_stale_temporaries
    from runner.loop import stop_on_signals

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    overrides = list(hc.overrides.task)
    earlier = earlier_start(run_dir, overrides) if multirun else None
    if earlier is not None and earlier.get("status") == "completed":
        log.info("job %s already completed in %s: skipped", hc.job.num, run_dir)
        return main_metric_value(earlier)
    dist_info = from_environment()
    if not dist_info.is_main:  # rank 0 logs the run (console and run.log); the others only their problems
        logging.getLogger().setLevel(logging.WARNING)
    resume = Path(cfg.resume) if cfg.resume is not None else None
    if (
        resume is None
        and earlier is not None
        and earlier.get("status") in ("running", "interrupted")
        and (run_dir / "checkpoints" / "last.pt").is_file()
    ):
        resume = run_dir
    if dist_info.is_main:
        for folder in (run_dir, run_dir / "checkpoints"):
            for stale in remove_stale_temporaries(folder):
                log.info("removed %s, left by a killed write", stale)
    record_type = RunRecord if dist_info.is_main else RankRecord
    record = record_type(run_dir, hc.runtime.choices.get("task"), overrides, resuming=resume is not None)
    record.update()  # status "running" from the first second (an attempt file while resuming)
    logger = None
    started = time.perf_counter()
    loop = None
    completed = False
    try:
        with stop_on_signals() as stop:  # from the first second: data generation and set-up included
            import torch
            from hydra.utils import instantiate

            from runner.checkpoint import load_checkpoint
            from runner.loop import Loop
            from runner.validation import chosen_groups, validate

            validate(cfg, chosen_groups(overrides))
            device = configure_torch(cfg, threads_per_job(hc.launcher, len(os.sched_getaffinity(0))))
            log.info(
                "run folder %s; %s, %d torch threads; setting up %s",
                run_dir,
                device,
                torch.get_num_threads(),
                record.data["task"],
            )
            log.info(
                "what differs from the defaults: %s (the whole config: %s)",
                " ".join(overrides) or "nothing",
                run_dir / ".hydra" / "config.yaml",
            )
            init_process_group(dist_info, device)
            task = instantiate(cfg.task, _convert_="all")
            logger = instantiate(cfg.logger) if dist_info.is_main else NullLogger()
            task.setup(device)
            checkpoint = run_dir / "checkpoints" / "last.pt" if dist_info.is_main else None
            progress = "lines" if multirun and cfg.loop.get("progress", "auto") == "auto" else None
            loop = Loop.from_config(cfg, task, logger, checkpoint, progress)
            check_data_parallel(task, loop.optimizer, dist_info)
            _warn_of_a_longer_warm_up(cfg.scheduler, loop.total_steps)
            if resume is not None:
                loop.load_state_dict(load_checkpoint(resume / "checkpoints" / "last.pt", map_location=device))
                record.resumed()
                log.info("resumed from %s at step %d", resume, loop.step)
            record.update(main_metric=task.metric, mode=task.mode)
            logger.text("config", "```\n" + OmegaConf.to_yaml(cfg, resolve=False) + "\n```", loop.step)
            log.info(
                "task %s on %s (%d torch threads), %s -> %s",
                record.data["task"],
                device,
                torch.get_num_threads(),
                loop.budget.describe(),
                run_dir,
            )
            result = loop.run(stop)
            if dist_info.is_main:
                with loop.evaluated_weights():
                    task.save(run_dir / "artifacts")
        main_first = {task.metric: result.metrics[task.metric], **result.metrics}
        logger.hparams(hparams_from_overrides(overrides), main_first)
        value = result.metrics[task.metric]
        beats = beats_baseline(result.metrics, task.metric, task.mode)
        record.update(
            status="completed",
            metrics=result.metrics,
            steps=result.steps,
            skipped_steps=result.skipped_steps,
            wall_time_s=round(loop.wall_time(), 3),
            beats_baseline=beats,
            schedule_steps=result.schedule_steps,
            time_budget_s=loop.budget.seconds,
        )
        summary = task.summary(result.metrics)
        log.info(
            "done: %s in %d steps, %.1f s%s -> %s",
            summary,
            result.steps,
            loop.wall_time(),
            " (early stop)" if result.early_stopped else "",
            run_dir,
        )
        if result.schedule_steps > result.steps:
            log.info(
                "the time budget (%g s) allowed %d of the %d steps: the schedules were compressed onto them "
                "(runner/budget.py); loop.time_budget=null runs all %d",
                loop.budget.seconds,
                result.steps,
                loop.total_steps,
                loop.total_steps,
            )
        if beats is False:
            log.warning(
                "%s %.4g is no better than the constant baseline's %.4g: this run has not learned more than a "
                "constant (too few steps? %d taken%s)",
                task.metric,
                value,
                result.metrics[f"baseline_{task.metric}"],
                result.steps,
                f" of loop.steps={loop.total_steps} in loop.time_budget={loop.budget.seconds:g} s"
                if result.schedule_steps > result.steps
                else f", loop.steps={loop.total_steps}",
            )
        if dist_info.is_main:
            log.info(
                "next: tensorboard --logdir %s --host 127.0.0.1; artifacts in %s; dwx report %s",
                run_dir / "tb",
                run_dir / "artifacts",
                run_dir,
            )
        completed = True
        return value
    except Exception as e:
        interrupt = find_cause(e, Interrupted)  # during instantiate it arrives wrapped by Hydra
        if interrupt is not None:
            loop_state = (loop.step, loop.skipped, loop.wall_time()) if loop else (0, 0, time.perf_counter() - started)
            return _record_interrupt(
                interrupt, record, loop_state, loop is not None and loop.saved_step is not None, hc, multirun, run_dir
            )
        message = describe_failure(e)
        record.update(
            status="failed",
            error=message,
            steps=loop.step if loop else 0,
            skipped_steps=loop.skipped if loop else 0,
            wall_time_s=round(time.perf_counter() - started, 3),
        )
        if multirun:
            log.error("job failed: %s (%s has status 'failed'; the sweep goes on)", message, record.written_to)
            return math.nan
        if find_user_error(e) is not None and not _full_errors():
            print(f"dwx: error: {message}", file=sys.stderr)
            if record.written_to != record.path:
                print(
                    f"dwx: {record.path} is unchanged; this attempt is recorded in {record.written_to}", file=sys.stderr
                )
            sys.exit(2)
        raise
    finally:
        if logger is not None:
            logger.close()
        destroy_process_group(completed)


def _record_interrupt(
    e: Interrupted,
    record: RunRecord,
    loop_state: tuple[int, int, float],
    checkpointed: bool,
    hc,
    multirun: bool,
    run_dir: Path,
) -> float:
    """Record a run stopped by SIGINT/SIGTERM; exit with 128 + the signal, or NaN for a SLURM sweep job.

    Args:
        loop_state: (step, skipped steps, wall time [s]) when the signal came.
        checkpointed: a checkpoint of this run exists to continue from.
    """
    steps, skipped, wall = loop_state
    record.update(status="interrupted", steps=steps, skipped_steps=skipped, wall_time_s=round(wall, 3), error=str(e))
    if checkpointed:
        log.warning("interrupted at step %d; checkpoint saved. Continue with: dwx run resume=%s", steps, run_dir)
    else:
        log.warning("interrupted before the first checkpoint (%s); nothing to resume", e)
    if multirun:
        if not _stops_the_sweep(hc.launcher):
            return math.nan
        log.warning(
            "sweep stopped: the jobs after job %s were not started. Run the same command with "
            "hydra.sweep.dir=%s to finish it (completed jobs are skipped, interrupted ones continue)",
            hc.job.num,
            Path(hc.sweep.dir).resolve(),
        )
    sys.exit(128 + e.signum)


def beats_baseline(metrics: dict[str, float], metric: str, mode: str) -> bool | None:
    """Whether the main metric is better than the task's constant baseline (``baseline_<metric>``, e.g. the
    best constant depth for ``abs_rel``); None when the task reports no such baseline."""
    base = metrics.get(f"baseline_{metric}")
    if base is None or not math.isfinite(base) or not math.isfinite(metrics[metric]):
        return None
    return metrics[metric] < base if mode == "min" else metrics[metric] > base


def _warn_of_a_longer_warm_up(scheduler: DictConfig | None, total_steps: int) -> None:
    """A learning-rate warm-up longer than the run never reaches the base rate: say so at the start."""
    if scheduler is None:
        return
    warm = scheduler.get("total_iters") if "LinearLR" in str(scheduler.get("_target_", "")) else None
    warm = warm if warm is not None else scheduler.get("warmup_steps")
    if isinstance(warm, int) and warm >= total_steps:
        log.warning(
            "the learning-rate warm-up (%d steps) is not shorter than the run (%d steps): the rate never reaches "
            "its base value; shorten it (scheduler.total_iters / scheduler.warmup_steps) or raise loop.steps",
            warm,
            total_steps,
        )


def describe_failure(exc: BaseException) -> str:
    """One line for metrics.json and the console: a user error's own message, else the error with its
    root cause (Hydra's instantiate wraps the real error in "Error in call to target ...")."""
    user_error = find_user_error(exc)
    if user_error is not None:
        return first_line(user_error)
    *_, root = exception_chain(exc, as_shown=True)
    head = first_line(exc).rstrip(":")
    if root is exc:
        return head
    return f"{head}: {type(root).__name__}: {first_line(root)}"


def _full_errors() -> bool:
    import os

    return os.environ.get("HYDRA_FULL_ERROR") == "1"
