"""A disk cache for generated data sets, so embedded data is generated once, not at every run.

Entries live in ``$DWX_CACHE`` (default ``$XDG_CACHE_HOME/dwx`` or ``~/.cache/dwx``), one file per
(name, key): the key is a JSON-able dict of everything the data depends on (seed, sizes, the
generator's version), hashed into the file name. Files hold only tensors, numbers and strings and are
read with ``weights_only=True``; they are written atomically, so parallel sweep jobs can share them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from runner.checkpoint import remove_stale_temporaries, save_checkpoint

log = logging.getLogger("dwx")


def cache_root() -> Path:
    if os.environ.get("DWX_CACHE"):
        return Path(os.environ["DWX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dwx"


def cache_path(name: str, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return cache_root() / name / f"{digest}.pt"


def cached(name: str, key: dict, build: Callable[[], dict]) -> dict:
    """``build()`` once per (name, key) and keep the result on disk; later calls load it.

    Args:
        name: data set name (a folder in the cache), e.g. ``"depth_from_video"``.
        key: everything the data depends on; change a generator's behaviour -> bump a version in it.
        build: returns a dict of tensors / numbers / strings / lists of those.
    """
    path = cache_path(name, key)
    if path.parent.is_dir():
        remove_stale_temporaries(path.parent)  # a generation killed while writing its file
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a corrupt or foreign file: rebuild it
            path.unlink(missing_ok=True)
    data = build()
    save_checkpoint(path, data)
    return data


class GenerationProgress:
    """Log lines while embedded data is generated (once per configuration; minutes on a cold cache):
    the first at once, then one per item at most every ``every_s`` seconds, with the rate and an ETA."""

    def __init__(self, total: int, what: str, every_s: float = 10.0):
        self.total, self.what, self.every_s = total, what, every_s
        self.done, self.t0 = 0, time.perf_counter()
        self.last = self.t0
        log.info("generating %d %s once; later runs read them from the cache (%s)", total, what, cache_root())

    def done_one(self) -> None:
        self.done += 1
        now = time.perf_counter()
        if now - self.last < self.every_s and self.done < self.total:
            return
        self.last = now
        per_item = (now - self.t0) / self.done
        log.info("generated %d/%d %s in %.0f s (ETA %.0f s)", self.done, self.total, self.what, now - self.t0,
                 per_item * (self.total - self.done))
