"""Scores of an estimate: its relative error per parameter (the task's ``rel_err`` is the worst of them)."""

from __future__ import annotations

import math

from tasks.physical_params.parameters import ParamSpec


def relative_error(estimate: float, truth: float) -> float:
    """|estimate - truth| / |truth| (inf when the truth is 0 and the estimate is not)."""
    if truth == 0:
        return 0.0 if estimate == 0 else math.inf
    return abs(estimate - truth) / abs(truth)


def parameter_metrics(specs: dict[str, ParamSpec], estimates: dict[str, float]) -> dict[str, float]:
    """``<p>``, ``<p>_true`` and ``rel_err_<p>`` for every parameter (only ``<p>`` when its truth is unknown)."""
    out = {}
    for name, spec in specs.items():
        out[name] = estimates[name]
        if spec.truth is not None:
            out[f"{name}_true"] = spec.truth
            out[f"rel_err_{name}"] = relative_error(estimates[name], spec.truth)
    return out
