"""Run folders that no two runs share.

The default run folder is named after the start second (``outputs/<task>/<date>_<time>``). Runs
started in the same second (``dwx run ... seed=N &`` from a script) would share it, and with it one
run.log and one metrics.json. ``${dwx.unique_dir:BASE}`` in ``hydra.run.dir`` claims BASE by creating
it, or ``BASE_2``, ``BASE_3``, ... when another run holds it.
"""

from __future__ import annotations

import os
from pathlib import Path

_claimed: dict[str, str] = {}  # base -> folder claimed by this process (Hydra resolves the key more than once)


def unique_dir(base: str) -> str:
    """A new folder ``base`` (or ``base_<n>``) that this process created, as a string.

    Ranks of one torchrun job (``WORLD_SIZE`` > 1) share their folder: there ``base`` is returned as is,
    and the ranks should be given one ``hydra.run.dir`` (README).
    """
    if base in _claimed:
        return _claimed[base]
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _claimed[base] = base
        return base
    Path(base).parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        candidate = base if n == 1 else f"{base}_{n}"
        try:
            os.mkdir(candidate)
        except FileExistsError:
            n += 1
            continue
        _claimed[base] = candidate
        return candidate


def register_resolvers() -> None:
    """Make ``${dwx.unique_dir:...}`` known to OmegaConf (before Hydra composes the run's config)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("dwx.unique_dir"):
        OmegaConf.register_new_resolver("dwx.unique_dir", unique_dir)
