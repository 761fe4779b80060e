"""Logging filters that Hydra's ``job_logging`` config (configs/hydra/default.yaml) attaches to handlers.

Kept free of torch: Hydra configures logging in every job process, sweep workers included.
"""

from __future__ import annotations

import logging


class JobTag(logging.Filter):
    """Sets ``record.job`` to ``"[job N]"`` in a multirun and ``""`` in a single run, so that the lines of
    a sweep's jobs can be told apart where they interleave (the console of a joblib sweep)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job = _job_tag()
        return True


class SkipFileOnly(logging.Filter):
    """Drops records logged with ``extra={"file_only": True}``: the periodic step lines, which the console
    shows as a progress bar instead while run.log keeps them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)


def _job_tag() -> str:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return ""
    hc = HydraConfig.get()
    return f"[job {hc.job.num}]" if hc.mode == RunMode.MULTIRUN else ""
