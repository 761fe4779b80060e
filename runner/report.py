"""``dwx report DIR``: one table of every run under DIR (a run, a sweep, or all of outputs/).

Columns: the overrides that differ between the runs, status, steps, wall time and the final metrics,
best first by the main metric (in its direction); failed and unfinished runs last. For more than one
run it also writes report.md and report.png (the main metric against each swept parameter) into DIR.
Reads only metrics.json files, so it works on folders copied back from a cluster.
"""

from __future__ import annotations

import csv
import io
import json
import math
import socket
import statistics
import sys
from pathlib import Path

from runner.errors import first_line


def collect_runs(root: Path) -> list[dict]:
    """Every metrics.json below ``root`` (or ``root`` itself), with its folder relative to ``root``.

    A file that cannot be read as a run record becomes ``{"run", "status": "unreadable", "error": why}``.
    """
    files = [root / "metrics.json"] if (root / "metrics.json").is_file() else sorted(root.rglob("metrics.json"))
    runs = []
    for f in files:
        data, problem = _read_record(f)
        if problem is not None:
            data = {"status": "unreadable", "error": problem}
        elif _stale(data):
            data["status"] = "stale"
            data["error"] = (f"still 'running' but its process {data['pid']} is gone (killed?); "
                             f"dwx run resume={f.parent} continues it from its last checkpoint")
        data["run"] = str(f.parent.relative_to(root)) if f.parent != root else "."
        runs.append(data)
    return runs


def _stale(record: dict) -> bool:
    """A record that says ``running`` although the process that wrote it, on this machine, is gone."""
    from runner.record import process_alive

    pid = record.get("pid")
    return (record.get("status") == "running" and record.get("host") == socket.gethostname()
            and isinstance(pid, int) and not isinstance(pid, bool) and not process_alive(pid))


def _read_record(path: Path) -> tuple[dict | None, str | None]:
    """(the record in a metrics.json, None) or (None, why it is not a record the table can show)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None, f"not valid JSON ({first_line(e)})"
    if not isinstance(data, dict):
        return None, f"not a JSON object but a {type(data).__name__}"
    metrics = data.get("metrics", {})
    if not isinstance(metrics, dict):
        return None, f"metrics is a {type(metrics).__name__}, not an object of numbers"
    bad = [k for k, v in metrics.items() if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))]
    if bad:
        return None, f"non-numeric metric(s) {', '.join(f'{k}={metrics[k]!r}' for k in bad)[:200]}"
    if not isinstance(data.get("main_metric"), (str, type(None))):
        return None, f"main_metric is a {type(data['main_metric']).__name__}, not a name"
    overrides = data.get("overrides", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        return None, "overrides is not a list of strings"
    return data, None


def _override_dict(run: dict) -> dict[str, str]:
    return {k.lstrip("+~"): v for k, _, v in (o.partition("=") for o in run.get("overrides", []))}


def _sort_key(run: dict):
    main = run.get("main_metric")
    value = run.get("metrics", {}).get(main) if main else None
    if run.get("status") != "completed" or value is None or not math.isfinite(value):
        return (1, 0.0)
    return (0, value if run.get("mode", "min") == "min" else -value)


def build_table(runs: list[dict]) -> tuple[list[str], list[list]]:
    """(header, rows) with the varying overrides, status and metrics, best run first; an ``error`` column
    (why a run failed, stopped or is unreadable) when a run that did not complete gives a reason."""
    runs = sorted(runs, key=_sort_key)
    overrides = [_override_dict(r) for r in runs]
    varying = _varying(overrides)
    metric_names = []
    for r in runs:
        for name in [r.get("main_metric"), *r.get("metrics", {})]:
            if name and name not in metric_names:
                metric_names.append(name)
    errors = [r.get("error") if r.get("status") != "completed" else None for r in runs]
    header = ["run", "task", *varying, "status", "steps", "wall_time_s", *metric_names]
    header += ["error"] if any(errors) else []
    rows = []
    for r, o, error in zip(runs, overrides, errors):
        m = r.get("metrics", {})
        rows.append(
            [
                r["run"],
                r.get("task"),
                *[o.get(k, "") for k in varying],
                r.get("status"),
                r.get("steps"),
                r.get("wall_time_s"),
                *[m.get(name, "") for name in metric_names],
                *([error] if any(errors) else []),
            ]
        )
    return header, rows


def _varying(overrides: list[dict[str, str]]) -> list[str]:
    """The override keys whose values differ between runs (not Hydra's own, not ``task``: it has its column)."""
    keys = sorted({k for o in overrides for k in o})
    return [k for k in keys if len({o.get(k) for o in overrides}) > 1 and not k.startswith("hydra.") and k != "task"]


def seed_table(runs: list[dict]) -> tuple[list[str], list[list]] | None:
    """(header, rows) of the main metric over seeds: the completed runs grouped by every varying override but
    ``seed``, each group with its seed count, median, mean, standard deviation, min, max and every seed's
    figure, best median first; None when the runs do not differ by seed."""
    done = [r for r in runs if r.get("status") == "completed" and r.get("main_metric") in r.get("metrics", {})]
    overrides = [_override_dict(r) for r in done]
    varying = _varying(overrides)
    if "seed" not in varying:
        return None
    others = [k for k in varying if k != "seed"]
    groups: dict[tuple, list[tuple[str, float]]] = {}
    for r, o in zip(done, overrides):
        key = (r.get("task"), r["main_metric"], r.get("mode", "min"), *(o.get(k, "") for k in others))
        groups.setdefault(key, []).append((o.get("seed", ""), float(r["metrics"][r["main_metric"]])))
    rows = []
    for (task, metric, mode, *values), per_seed in groups.items():
        figures = [v for _, v in per_seed]
        spread = statistics.stdev(figures) if len(figures) > 1 else 0.0
        seeds = " ".join(f"{s}:{v:.4g}" for s, v in sorted(per_seed, key=lambda p: _as_number(p[0])))
        rows.append([task, *values, metric, len(figures), statistics.median(figures), statistics.mean(figures),
                     spread, min(figures), max(figures), seeds, mode])
    rows.sort(key=lambda row: row[-7] if row[-1] == "min" else -row[-7])  # by median, in the metric's direction
    header = ["task", *others, "metric", "seeds", "median", "mean", "std", "min", "max", "per seed"]
    return header, [row[:-1] for row in rows]


def _as_number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.inf


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return "" if x is None else str(x)


def render(header: list[str], rows: list[list], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([dict(zip(header, row)) for row in rows], indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(header)
        writer.writerows(rows)
        return buf.getvalue()
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_report(runs: list[dict]) -> str:
    """One table per task (best first), each followed by its table over seeds when its runs differ by seed."""
    tasks = list(dict.fromkeys(r.get("task") for r in runs))
    parts = []
    for task in tasks:
        mine = [r for r in runs if r.get("task") == task]
        if len(tasks) > 1:
            parts.append(f"## {task or 'runs without a readable task'}\n")
        parts.append(render(*build_table(mine), "markdown"))
        seeds = seed_table(mine)
        if seeds is not None:
            parts.append("\nThe main metric over seeds (completed runs, grouped by everything but the seed):\n")
            parts.append(render(*seeds, "markdown"))
        parts.append("")
    return "\n".join(parts).rstrip("\n")


def report_main(root: Path, fmt: str) -> int:
    """Print the table of the runs under ``root`` (stdout); errors and unreadable runs go to stderr."""
    if not root.exists():
        print(f"dwx: error: {root} does not exist; pass a run folder, a sweep folder or outputs/", file=sys.stderr)
        return 2
    runs = collect_runs(root)
    if not runs:
        print(f"dwx: error: no metrics.json under {root}; is it a dwx run or sweep folder?", file=sys.stderr)
        return 2
    for r in runs:
        if r.get("status") == "unreadable":
            print(f"dwx: warning: {root / r['run'] / 'metrics.json'} is unreadable: {r['error']}", file=sys.stderr)
    header, rows = build_table(runs)
    markdown = markdown_report(runs) if fmt == "markdown" or len(runs) > 1 else None
    print(markdown if fmt == "markdown" else render(header, rows, fmt))
    if len(runs) > 1:
        try:
            (root / "report.md").write_text(markdown + "\n")
            written = [root / "report.md"]
            if _plot(runs, header[2 : header.index("status")], root / "report.png"):
                written.append(root / "report.png")
        except OSError as e:  # a read-only folder copied back from a cluster: the table above is the report
            print(f"dwx: warning: cannot write report.md / report.png into {root}: {e}", file=sys.stderr)
        else:
            print(f"dwx: wrote {' and '.join(map(str, written))}", file=sys.stderr)
    return 0


def _plot(runs: list[dict], params: list[str], out: Path) -> bool:
    """report.png: the main metric against each swept parameter (needs matplotlib, in the launchers extra);
    False when it was not drawn (no matplotlib, or nothing to plot)."""
    try:
        from runner.report_plot import plot_sweep
    except ImportError:
        return False
    return plot_sweep(runs, params, out) is not None
