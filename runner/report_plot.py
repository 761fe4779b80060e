"""The plot of ``dwx report`` for a sweep: the main metric against each swept parameter.

One panel per parameter that differs between runs; numeric parameters on a log axis when they are
positive and span more than a decade, other values as categories. Completed runs only.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml


def _value(text: str):
    """An override's value as a number when it reads as one, else the text."""
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return float(parsed) if isinstance(parsed, (int, float)) and not isinstance(parsed, bool) else text


def _overrides(run: dict) -> dict[str, str]:
    return {k.lstrip("+~"): v for k, _, v in (o.partition("=") for o in run.get("overrides", []))}


def plot_sweep(runs: list[dict], params: list[str], out: Path) -> Path | None:
    """Write ``out`` (PNG) with the main metric against each of ``params``; None if nothing to plot.

    Args:
        runs: metrics.json records (as read by :func:`runner.report.collect_runs`).
        params: the override keys that differ between the runs.
        out: the PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in runs if r.get("status") == "completed" and r.get("main_metric")]
    metric = done[0]["main_metric"] if done else None
    points = [
        (r, r["metrics"][metric])
        for r in done
        if isinstance(r.get("metrics", {}).get(metric), (int, float)) and math.isfinite(r["metrics"][metric])
    ]
    if not points or not params:
        return None
    mode = points[0][0].get("mode", "min")
    fig, axes = plt.subplots(1, len(params), figsize=(4 * len(params), 3.2), squeeze=False)
    for ax, key in zip(axes[0], params):
        xs = [_value(_overrides(r).get(key, "")) for r, _ in points]
        ys = [y for _, y in points]
        if all(isinstance(x, float) for x in xs):
            ax.scatter(xs, ys)
            if min(xs) > 0 and max(xs) > 10 * min(xs):
                ax.set_xscale("log")
        else:
            labels = sorted({str(x) for x in xs})
            ax.scatter([labels.index(str(x)) for x in xs], ys)
            ax.set_xticks(range(len(labels)), labels, rotation=30)
        ax.set_xlabel(key)
        ax.set_ylabel(f"{metric} ({'lower' if mode == 'min' else 'higher'} is better)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
