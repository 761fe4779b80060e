"""Fault catalogue: bad inputs, killed and interrupted runs, crafted run folders, dead sweep workers.

Each case runs ``dwx`` in a subprocess as a user would, in a temporary folder, and checks that nothing
was lost: the exit code, the first line the user sees, the status metrics.json records, and whether
the run's results, checkpoint or record survived (a resume completes, a record is unchanged, no code
ran). Prints one table; every row should end "yes".

    python benchmarks/faults.py [--kills 20] [--only NAME[,NAME]] [--json] [--write docs/faults.md]

Fast cases use the test-local toy task (tests/fixtures); the diverging-run cases use experiment=depth_tiny.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.conftest import FIXTURES, dwx_env  # noqa: E402  (the tests' environment for a dwx subprocess)

TOY = ["--config-dir", str(FIXTURES / "configs")]


@dataclass
class Row:
    case: str
    exit_code: int | str
    first_line: str
    status: str
    nothing_lost: bool


def dwx(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=ROOT, env=dwx_env(), capture_output=True,
                          text=True, timeout=timeout)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runner.cli", *args], cwd=ROOT, env=dwx_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def record(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def first_line(out: subprocess.CompletedProcess | tuple[str, str]) -> str:
    stdout, stderr = (out.stdout, out.stderr) if hasattr(out, "stdout") else out
    lines = [line for line in (stderr or stdout).strip().splitlines() if line.strip()]
    return lines[0][:110] if lines else ""


def wait_for(path: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if time.time() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.02)


# ------------------------------------------------------------------ bad input: one line, exit 2, no work
def bad_input_cases(tmp: Path) -> list[tuple[str, list[str], str]]:
    """(case, dwx arguments, text the one error line must hold)."""
    frames = tmp / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    import imageio.v3 as iio

    for i in range(6):
        iio.imwrite(frames / f"{i:03d}.png", rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    nan_K, neg_K, good_K = tmp / "K_nan.yaml", tmp / "K_neg.yaml", tmp / "K.yaml"
    for path, fx in ((nan_K, ".nan"), (neg_K, "-60"), (good_K, "60")):
        path.write_text(f"{{fx: {fx}, fy: 60, cx: 32, cy: 24, width: 64, height: 48}}\n")
    mesh = tmp / "nan.obj"
    mesh.write_text("v 0 0 0\nv 1 0 0\nv 0 nan 0\nv 0 0 1\nf 1 2 3\nf 1 3 4\nf 1 4 2\nf 2 4 3\n")
    existing = tmp / "existing.txt"
    existing.write_text("keep me\n")
    frames_data = ["task=depth_from_video", "data=frames", f"data.path={frames}", "loop.steps=2"]
    return [
        ("optim.lr=inf", ["run", *TOY, "task=pose_fit", "optim.lr=inf"], "optim.lr"),
        ("scheduler.step_size=0", ["run", *TOY, "task=pose_fit", "scheduler=step", "scheduler.step_size=0"],
         "scheduler.step_size"),
        ("renderer.sigma=nan", ["run", "experiment=recon_tiny_fit", "renderer.sigma=nan"], "renderer.sigma"),
        ("data.frame_stride=0", ["run", *frames_data, f"data.intrinsics={good_K}", "data.frame_stride=0"],
         "data.frame_stride"),
        ("intrinsics with a NaN focal", ["run", *frames_data, f"data.intrinsics={nan_K}"], "fx must be"),
        ("intrinsics with a negative focal", ["run", *frames_data, f"data.intrinsics={neg_K}"], "fx must be"),
        ("data.image_size negative", ["run", *frames_data, f"data.intrinsics={good_K}", "data.image_size=[-32,64]"],
         "data.image_size"),
        ("mesh with NaN vertices", ["run", "experiment=recon_tiny_fit", "data=mesh", f"data.path={mesh}"],
         "not finite"),
        ("data export onto a file", ["data", "export", str(existing), "experiment=depth_tiny"], "already exists"),
        ("data export, task without data", ["data", "export", str(tmp / "x"), "task=physical_params"],
         "no data set to export"),
    ]


def run_bad_input(name: str, args: list[str], expected: str, tmp: Path) -> Row:
    slug = "".join(c if c.isalnum() else "_" for c in name)
    folder = [f"hydra.run.dir={tmp / ('run_' + slug)}"] if args[0] == "run" else []
    out = dwx(*args, *folder)
    lines = out.stderr.strip().splitlines()
    one_line = out.returncode == 2 and len(lines) == 1 and lines[0].startswith("dwx: error:") and expected in lines[0]
    kept = (tmp / "existing.txt").read_text() == "keep me\n"
    return Row(f"bad input: {name}", out.returncode, first_line(out), "-", one_line and kept)


def case_report_unreadable(tmp: Path) -> Row:
    sweep = tmp / "report"
    for i, text in enumerate(["{not json", "[1, 2]", json.dumps({"status": "completed", "metrics": {"x": "abc"}})]):
        (sweep / str(i)).mkdir(parents=True)
        (sweep / str(i) / "metrics.json").write_text(text)
    out = dwx("report", str(sweep))
    listed = out.stdout.count("unreadable") >= 3 and out.stderr.count("unreadable") >= 3
    return Row("dwx report over 3 corrupt metrics.json", out.returncode, first_line((out.stderr, "")), "-", listed)


# ------------------------------------------------------------------ killed and interrupted runs
def case_sigkill_during_checkpoints(tmp: Path, kills: int) -> Row:
    """SIGKILL at random times into a run that checkpoints every step; after each kill last.pt must load
    (or not exist yet), and resuming after the last kill must complete."""
    import torch

    run_dir = tmp / "killed"
    args = ["run", *TOY, "task=pose_fit", "task.step_delay_s=0.002", "loop.steps=100000", "loop.checkpoint_every=1",
            "logger=none", f"hydra.run.dir={run_dir}"]
    rng = random.Random(0)
    readable = True
    for k in range(kills):
        proc = start(*(args if k == 0 else ["run", *TOY, f"resume={run_dir}"]))
        wait_for(run_dir / "checkpoints" / "last.pt")
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        try:
            torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
        except Exception:
            readable = False
    steps_at_kill = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"]
    out = dwx("run", *TOY, f"resume={run_dir}", f"loop.steps={steps_at_kill + 5}")
    stale = list((run_dir / "checkpoints").glob(".*.tmp*"))
    status = record(run_dir).get("status", "?")
    ok = readable and out.returncode == 0 and status == "completed" and not stale
    return Row(f"SIGKILL x{kills} while checkpointing every step, then resume", out.returncode,
               f"last.pt readable after every kill: {readable}; stale .tmp left: {len(stale)}", status, ok)


def case_signal_then_resume(tmp: Path, sig: signal.Signals) -> Row:
    common = [*TOY, "task=pose_fit", "task.batch=32", "task.step_delay_s=0.01", "optim.lr=0.03", "loop.steps=150",
              "loop.checkpoint_every=10", "loop.eval_every=50", "scheduler=cosine", "logger=none"]
    full, part = tmp / f"full_{sig.name}", tmp / f"part_{sig.name}"
    dwx("run", *common, f"hydra.run.dir={full}")
    proc = start("run", *common, f"hydra.run.dir={part}")
    wait_for(part / "checkpoints" / "last.pt")
    time.sleep(random.Random(sig).uniform(0.0, 0.5))
    proc.send_signal(sig)
    out, err = proc.communicate()
    interrupted = record(part).get("status")
    resumed = dwx("run", *TOY, f"resume={part}")
    same = record(part).get("metrics") == record(full).get("metrics") and record(part).get("status") == "completed"
    said = next((line.split("] ")[-1] for line in (out + err).splitlines() if "interrupted at step" in line), "")
    return Row(f"{sig.name} at a random step, then resume", proc.returncode, said[:110],
               f"{interrupted} -> {record(part).get('status')}", same and resumed.returncode == 0)


def case_signal_during_setup(tmp: Path) -> Row:
    run_dir = tmp / "setup"
    proc = start("run", *TOY, "task=pose_fit", "task.setup_delay_s=60", f"hydra.run.dir={run_dir}")
    wait_for(run_dir / "metrics.json")
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate()
    status = record(run_dir).get("status", "?")
    return Row("SIGTERM during set-up (data generation)", proc.returncode, first_line(("", err or out)), status,
               status == "interrupted")


def case_sequential_sweep_interrupted(tmp: Path) -> Row:
    sweep = tmp / "sweep_sigint"
    args = ["run", "-m", *TOY, "task=pose_fit", "task.step_delay_s=0.02", "loop.steps=60", "loop.checkpoint_every=5",
            "logger=none", "seed=0,1,2", f"hydra.sweep.dir={sweep}"]
    proc = start(*args)
    wait_for(sweep / "0" / "checkpoints" / "last.pt")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate()
    stopped = proc.returncode != 0 and not (sweep / "1").exists()
    rerun = dwx(*args)
    statuses = [record(sweep / str(i)).get("status") for i in range(3)]
    said = next((line for line in (out + err).splitlines() if "sweep stopped" in line), first_line(("", err)))
    return Row("one SIGINT to a sequential sweep, then rerun", proc.returncode, said.split("] ")[-1][:110],
               "interrupted -> " + "/".join(map(str, statuses)),
               stopped and rerun.returncode == 0 and statuses == ["completed"] * 3)


def case_dead_sweep_worker(tmp: Path) -> Row:
    sweep = tmp / "sweep_dead"
    out = dwx("run", "-m", *TOY, "task=pose_fit_dies", "task.die_at_step=3", "task.die_seed=1", "loop.steps=20",
              "logger=none", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1,2,3",
              f"hydra.sweep.dir={sweep}")
    statuses = [record(sweep / str(i)).get("status") for i in range(4)]
    ok = statuses == ["completed", "failed", "completed", "completed"]
    return Row("a joblib worker SIGKILLed mid-sweep (job 1 of 4)", out.returncode,
               record(sweep / "1").get("error") or first_line(out), "/".join(map(str, statuses)), ok)


def case_simultaneous_runs(tmp: Path) -> Row:
    root = tmp / "together"
    common = ["run", *TOY, "task=pose_fit", "loop.steps=3", "logger=none", f"paths.output_root={root}"]
    procs = [start(*common, f"seed={i}") for i in range(3)]
    codes = [p.wait() for p in procs]
    folders = sorted((root / "pose_fit").iterdir()) if (root / "pose_fit").exists() else []
    seeds = sorted(record(f).get("overrides", ["?"])[-1] for f in folders)
    return Row("three runs started in the same second", max(codes), f"{len(folders)} run folders: {', '.join(seeds)}",
               "/".join(record(f).get("status", "?") for f in folders), seeds == ["seed=0", "seed=1", "seed=2"])


def case_diverging_run(tmp: Path, name: str, override: str) -> Row:
    import torch

    from runner.checkpoint import all_finite

    run_dir = tmp / f"diverge_{name}"
    out = dwx("run", "experiment=depth_tiny", override, "loop.steps=30", "loop.checkpoint_every=1", "logger=none",
              f"hydra.run.dir={run_dir}")
    ckpt = run_dir / "checkpoints" / "last.pt"
    finite = True
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        finite = all_finite(state)
    rec = record(run_dir)
    return Row(f"diverging depth run ({override})", out.returncode, (rec.get("error") or "")[:110],
               rec.get("status", "?"), rec.get("status") == "failed" and finite)


def case_failed_resume(tmp: Path) -> Row:
    run_dir = tmp / "completed"
    dwx("run", *TOY, "task=pose_fit", "loop.steps=6", "logger=none", f"hydra.run.dir={run_dir}")
    before = record(run_dir)
    out = dwx("run", *TOY, f"resume={run_dir}", "loop.ema_decay=0.9")
    return Row("resume of a completed run with a wrong setting", out.returncode, first_line(out),
               record(run_dir).get("status", "?"), record(run_dir) == before and before.get("status") == "completed")


def case_crafted_folder(tmp: Path) -> Row:
    """A shared run folder whose saved overrides would run code through Hydra (a job environment hook and a
    _target_); dwx must refuse it and run nothing."""
    run_dir = tmp / "crafted"
    dwx("run", *TOY, "task=pose_fit", "loop.steps=3", "logger=none", f"hydra.run.dir={run_dir}")
    marker = tmp / "marker"
    overrides = run_dir / ".hydra" / "overrides.yaml"
    hook = f"- +task.hook._target_=pathlib.Path.touch\n- +task.hook.self={marker}\n"
    overrides.write_text(overrides.read_text() + hook)
    out = dwx("run", *TOY, f"resume={run_dir}")
    return Row("crafted run folder (resume with a _target_)", out.returncode, first_line(out), "-",
               out.returncode == 2 and not marker.exists())


def case_skip_everything(tmp: Path) -> Row:
    run_dir = tmp / "skips"
    out = dwx("run", *TOY, "task=pose_fit", "task.nan_at_step=0", "loop.nonfinite=skip", "loop.steps=50",
              "logger=none", f"hydra.run.dir={run_dir}")
    rec = record(run_dir)
    return Row("loop.nonfinite=skip with every step non-finite", out.returncode, (rec.get("error") or "")[:110],
               f"{rec.get('status')} (skipped_steps {rec.get('skipped_steps')})", rec.get("status") == "failed")


def cases(tmp: Path, kills: int) -> dict[str, Callable[[], list[Row]]]:
    return {
        "bad_input": lambda: [run_bad_input(n, a, e, tmp) for n, a, e in bad_input_cases(tmp)]
        + [case_report_unreadable(tmp)],
        "sigkill": lambda: [case_sigkill_during_checkpoints(tmp, kills)],
        "signals": lambda: [case_signal_then_resume(tmp, s) for s in (signal.SIGINT, signal.SIGTERM)]
        + [case_signal_during_setup(tmp), case_sequential_sweep_interrupted(tmp)],
        "crafted": lambda: [case_crafted_folder(tmp)],
        "worker": lambda: [case_dead_sweep_worker(tmp)],
        "together": lambda: [case_simultaneous_runs(tmp)],
        "diverge": lambda: [case_diverging_run(tmp, "all", "optim.lr=1e30"),
                            case_diverging_run(tmp, "pose", "+optim.groups.pose.lr=1e6")],
        "records": lambda: [case_failed_resume(tmp), case_skip_everything(tmp)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs of the checkpointing run")
    parser.add_argument("--only", default="", help="comma-separated groups: " + ", ".join(cases(Path(), 0)))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write", type=Path, help="also write the table, with date, command and machine, here")
    args = parser.parse_args()
    rows: list[Row] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dwx_faults_") as d:
        groups = cases(Path(d), args.kills)
        for name in args.only.split(",") if args.only else groups:
            rows += groups[name]()
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return
    text = table(rows, time.perf_counter() - t0)
    print(text)
    if args.write:
        from machine import machine_line, write_report

        write_report(args.write, text, machine_line())
    sys.exit(1 if any(not r.nothing_lost for r in rows) else 0)


def table(rows: list[Row], seconds: float) -> str:
    """The catalogue as Markdown: a title with the date, one row per case, and the count that lost nothing."""
    lines = [f"# dwx fault catalogue ({time.strftime('%Y-%m-%d %H:%M')}, {seconds:.0f} s)", "",
             "| case | exit | first line | record status | nothing lost |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        first = r.first_line.replace("|", "/")
        lines.append(f"| {r.case} | {r.exit_code} | {first} | {r.status} | {'yes' if r.nothing_lost else 'NO'} |")
    lost = sum(not r.nothing_lost for r in rows)
    lines += ["", f"{len(rows) - lost} of {len(rows)} cases lost nothing", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
