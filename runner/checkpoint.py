"""Checkpoints: written atomically, read without unpickling arbitrary objects.

A checkpoint holds only tensors, numbers, strings, lists, tuples and dicts, so that
``torch.load(..., weights_only=True)`` can read it: RNG states are stored as tensors and lists.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from runner.errors import InputError
from runner.record import process_alive


def rng_state() -> dict:
    """The states of Python's, NumPy's and torch's (CPU and CUDA) generators, in safe types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "python": [py_version, list(py_internal), py_gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py_version, py_internal, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_internal), py_gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def all_finite(state) -> bool:
    """Whether every floating-point tensor in a nested state (dicts, lists, tuples) is finite."""
    if torch.is_tensor(state):
        return not state.is_floating_point() or bool(torch.isfinite(state).all())
    if isinstance(state, dict):
        return all(all_finite(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return all(all_finite(v) for v in state)
    return True


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files (``.<name>.tmp<pid>``) that a killed writer left in ``folder``.

    :func:`save_checkpoint` and ``write_json_atomic`` write through such a file and rename it; a process
    killed between the two leaves it behind. Files of processes that are still alive are kept.
    Returns the deleted paths.
    """
    removed = []
    for tmp in Path(folder).glob(".*.tmp*"):
        pid = tmp.name.rpartition(".tmp")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no arbitrary code)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"resume: no checkpoint at {path}; pass a run folder that has checkpoints/last.pt")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which, not a pickle traceback
        raise InputError(f"resume: cannot read checkpoint {path}: {e}") from e
