"""dwx's joblib launcher as a Hydra plugin: Hydra's joblib launcher, in which a job whose worker process dies
fails alone and the other jobs finish.

:func:`register` makes ``hydra/launcher=joblib`` select it: the joblib plugin's own config node with this
class as ``_target_`` (same keys, same defaults). It replaces the plugin's node in Hydra's ConfigStore
instead of shadowing it with ``configs/hydra/launcher/joblib.yaml``: a YAML config named like a ConfigStore
node is merged into it by Hydra's deprecated automatic schema matching, which warns in the sweep's process
and in every worker. The implementation lives in :mod:`runner.launcher`; this module stays light because
Hydra imports every plugin module on each start.
"""

# No `from __future__ import annotations`: Hydra's plugin scan runs this module before it is in sys.modules,
# where a dataclass with string annotations cannot be built.
from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher as HydraJoblibLauncher


class JoblibLauncher(HydraJoblibLauncher):
    """Hydra's ``JoblibLauncher`` (same config keys) whose sweeps survive a worker killed by the OS.

    It keeps its base class's name: dwx recognises a joblib sweep by it (:func:`runner.app.threads_per_job`).
    """

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from runner.launcher import launch_isolated

        return launch_isolated(self, super().launch, job_overrides, initial_job_idx)


@dataclass
class DwxJoblibLauncherConf(JobLibLauncherConf):
    """The joblib plugin's config (``n_jobs``, ``verbose``, ``timeout``, ...) with dwx's launcher as target."""

    _target_: str = f"{JoblibLauncher.__module__}.{JoblibLauncher.__qualname__}"


def register() -> None:
    """Register the launcher with Hydra and make ``hydra/launcher=joblib`` select it.

    ``Plugins.instance()`` scans the installed plugins first (the joblib plugin stores its own node then),
    so the node stored here replaces it; Hydra hands the ConfigStore on to every joblib worker.
    """
    Plugins.instance().register(JoblibLauncher)
    ConfigStore.instance().store(group="hydra/launcher", name="joblib", node=DwxJoblibLauncherConf, provider="dwx")
