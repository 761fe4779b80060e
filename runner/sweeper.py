"""An Optuna sweeper that resumes: Hydra's Optuna plugin with a persistent study, made restartable.

``hparams_search=<task>`` selects it: ``hydra.sweeper._target_`` names the thin plugin class in
``hydra_plugins/dwx_sweeper`` (Hydra loads plugins only from there); this module is its
implementation. Against the plugin as shipped it changes three things, so that running the same
command again with ``hydra.sweep.dir=<the sweep>`` continues an interrupted search where it stopped:

* ``n_trials`` is the study's total budget: only the trials still missing are run, and job folders
  are numbered after the trials already in the study (trial ``k`` lives in ``<sweep>/<k>``);
* trials left running by a killed search are marked failed (listed in the study's user attribute
  ``interrupted_trials``) and do not count against the budget, and the sampler's random generator
  is reseeded so that the resumed search does not propose the parameter sets of its first trials;
* a job that dwx records as failed (it returns NaN so that the sweep goes on) counts as a failure
  for ``max_failure_rate``: when a batch's failure rate exceeds it, the search stops with the error.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from optuna.trial import TrialState

log = logging.getLogger("dwx")


class FailedJob(RuntimeError):
    """A dwx job of the sweep ended with status 'failed' (see its metrics.json)."""


class _NanIsFailure(Launcher):
    """Wraps the real launcher: a NaN return value (dwx's failed job) becomes a failed JobReturn."""

    def __init__(self, launcher: Launcher):
        self.launcher = launcher

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.launcher.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        returns = self.launcher.launch(job_overrides, initial_job_idx)
        for ret in returns:
            value = ret.return_value if ret.status == JobStatus.COMPLETED else None
            if isinstance(value, float) and math.isnan(value):
                ret.status = JobStatus.FAILED
                ret._return_value = FailedJob(
                    f"job {ret.working_dir} failed (its metrics.json has the error); overrides {ret.overrides}"
                )
        return returns


class ResumableOptunaSweeperImpl(OptunaSweeperImpl):
    """The plugin's implementation with resume and failure counting (see the module docstring)."""

    def setup(self, *, hydra_context, task_function, config) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.launcher = _NanIsFailure(self.launcher)

    def sweep(self, arguments: list[str]) -> None:
        Path(self.sweep_dir).mkdir(parents=True, exist_ok=True)  # the sqlite storage lives inside it
        if self.storage is not None:
            self._continue_study()
        super().sweep(arguments)

    def _continue_study(self) -> None:
        """Mark stale trials, skip the budget already spent and number new jobs after the old ones."""
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            directions=self._get_directions(),
            load_if_exists=True,
        )
        trials = study.get_trials(deepcopy=False)
        if not trials:
            return
        interrupted = set(study.user_attrs.get("interrupted_trials", []))
        for t in trials:
            if t.state == TrialState.RUNNING:
                study.tell(t.number, state=TrialState.FAIL)
                interrupted.add(t.number)
        study.set_user_attr("interrupted_trials", sorted(interrupted))
        done = len(trials) - len(interrupted)
        self.job_idx = len(trials)
        self.n_trials = max(0, self.n_trials - done)
        self.sampler.reseed_rng()
        log.info(
            "resuming study '%s': %d trials in the study (%d counted), %d to go",
            self.study_name,
            len(trials),
            done,
            self.n_trials,
        )
