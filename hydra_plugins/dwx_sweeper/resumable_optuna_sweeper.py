"""dwx's Optuna sweeper as a Hydra plugin (Hydra loads plugins only from the ``hydra_plugins`` package).

The implementation lives in :mod:`runner.sweeper`; this module stays light because Hydra imports every
plugin module on each start.
"""

from __future__ import annotations

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper


class ResumableOptunaSweeper(OptunaSweeper):
    """Hydra's ``OptunaSweeper`` (same config keys) that continues a study stored in ``storage``."""

    def __init__(
        self,
        sampler,
        direction,
        storage,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        search_space,
        custom_search_space: str | None,
        params,
    ):
        from runner.sweeper import ResumableOptunaSweeperImpl  # optuna is imported only when sweeping

        self.sweeper = ResumableOptunaSweeperImpl(
            sampler,
            direction,
            storage,
            study_name,
            n_trials,
            n_jobs,
            max_failure_rate,
            search_space,
            custom_search_space,
            params,
        )
