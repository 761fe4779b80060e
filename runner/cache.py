"""A disk cache for generated data sets, so embedded data is generated once, not at every run.

Entries live in ``$DWX_CACHE`` (default ``$XDG_CACHE_HOME/dwx`` or ``~/.cache/dwx``), one file per
(name, key): the key is a JSON-able dict of everything the data depends on (seed, sizes, the
generator's version), hashed into the file name. Files hold only tensors, numbers and strings and are
read with ``weights_only=True``; they are written atomically, so parallel sweep jobs can share them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

from runner.checkpoint import remove_stale_temporaries, save_checkpoint


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
