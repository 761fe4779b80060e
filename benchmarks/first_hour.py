"""A newcomer's first hour, measured: a fresh clone installed in a fresh virtual environment, then each
command of the README's "What to expect" table run as a user would, with a fresh data cache.

For each command it records the wall time, the exit code, the main metric against its constant baseline
(from metrics.json) and the console transcript without the per-step lines. The install is the README's
quick-start install (`pip install -e '.[dev,launchers,video,warp]'`) into a new venv that sees no packages
of the running interpreter, so its time is what a new machine of this kind pays.

    python benchmarks/first_hour.py [--write docs/first_hour.md] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = "dev,launchers,video,warp"
# (name, dwx run arguments): the README's "What to expect" table, in its order
COMMANDS = [
    ("depth smoke", ["task=depth_from_video", "experiment=depth_tiny"]),
    ("depth, one minute", ["task=depth_from_video", "loop.time_budget=1m"]),
    ("depth, default", ["task=depth_from_video"]),
    ("physical_params, default", ["task=physical_params"]),
    ("single_view_recon, default", ["task=single_view_recon"]),
]
STEP_LINE = re.compile(r"\] step \d+/\d+ |generated \d+/\d+ ")


def timed(cmd: list[str], **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``cmd`` (text output captured) and return it with its wall time [s]."""
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    return out, time.perf_counter() - t0


def install(work: Path) -> tuple[Path, float]:
    """Clone this checkout's HEAD into ``work/dwx`` and install it into a new venv; returns (dwx, seconds)."""
    clone, venv = work / "dwx", work / "venv"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    out, seconds = timed([str(venv / "bin" / "pip"), "install", "-q", "-e", f".[{EXTRAS}]"], cwd=clone)
    if out.returncode != 0:
        sys.exit(f"install failed:\n{out.stderr[-3000:]}")
    return venv / "bin" / "dwx", seconds


def run(dwx: Path, args: list[str], run_dir: Path, cache: Path, cwd: Path) -> dict:
    """One ``dwx run``: wall time, exit code, metrics.json's figures and the transcript without step lines."""
    env = {"PATH": f"{dwx.parent}:/usr/bin:/bin", "HOME": str(Path.home()), "DWX_CACHE": str(cache)}
    out, seconds = timed([str(dwx), "run", *args, f"hydra.run.dir={run_dir}"], cwd=cwd, env=env)
    record = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    metric, metrics = record.get("main_metric"), record.get("metrics", {})
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line and not STEP_LINE.search(line)]
    return {
        "wall_s": seconds,
        "returncode": out.returncode,
        "metric": metric,
        "value": metrics.get(metric),
        "baseline": metrics.get(f"baseline_{metric}"),
        "steps": record.get("steps"),
        "schedule_steps": record.get("schedule_steps"),
        "transcript": lines,
    }


def _figure(value) -> str:
    return "" if value is None else f"{value:.4g}"


def report(install_s: float, results: list[tuple[str, list[str], dict]], work: Path) -> str:
    """The markdown: install time, one row per command, then each transcript."""
    lines = [
        f"# A newcomer's first hour ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"Fresh clone, fresh venv: `pip install -e '.[{EXTRAS}]'` took **{install_s:.0f} s**. Each command then ran "
        "with a fresh data cache (`DWX_CACHE`), one after the other, as in the README's table.",
        "",
        "| command | wall [s] | exit | steps taken / schedule | main metric | constant baseline |",
        "| --- | ---: | ---: | --- | --- | --- |",
    ]
    for _, args, r in results:
        metric = f"{r['metric']} {_figure(r['value'])}" if r["metric"] else ""
        lines.append(
            f"| `dwx run {' '.join(args)}` | {r['wall_s']:.0f} | {r['returncode']} | "
            f"{r['steps']} / {r['schedule_steps']} | {metric} | {_figure(r['baseline'])} |"
        )
    for name, args, r in results:
        transcript = "\n".join(line.replace(str(work), "<tmp>") for line in r["transcript"])
        lines += ["", f"## {name}: `dwx run {' '.join(args)}`", "", "```", transcript, "```"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="also write the report, with date, command and machine, here")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import machine_line, write_report

    work = args.keep or Path(tempfile.mkdtemp(prefix="dwx_first_hour_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        machine = machine_line()
        dwx, install_s = install(work)
        print(f"install: {install_s:.0f} s", flush=True)
        results = []
        for i, (name, cmd) in enumerate(COMMANDS):
            r = run(dwx, cmd, work / "runs" / str(i), work / f"cache{i}", work / "dwx")
            print(f"{name}: {r['wall_s']:.0f} s, exit {r['returncode']}, {r['metric']} {r['value']}", flush=True)
            results.append((name, cmd, r))
        text = report(install_s, results, work)
        print(text)
        print(f"Machine: {machine}")
        if args.write:
            write_report(args.write, text, machine)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
