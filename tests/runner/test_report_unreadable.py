"""dwx report lists runs whose metrics.json it cannot use as unreadable (table and stderr), never skips them."""

from __future__ import annotations

import json
import os

import pytest

from runner.record import write_json_atomic
from runner.report import build_table, collect_runs
from tests.conftest import run_dwx

BAD = {
    "corrupt": ('{"task": "pose_fit", "status": "compl', "not valid JSON"),
    "list": ("[1, 2, 3]", "not a JSON object but a list"),
    "text_metric": (json.dumps({"status": "completed", "main_metric": "err", "metrics": {"err": "low"}}),
                    "non-numeric metric(s) err='low'"),
    "metrics_list": (json.dumps({"status": "completed", "metrics": [1.0]}), "metrics is a list"),
    "binary": (b"\xff\xfe\x00garbage", "not valid JSON"),
}


def _good(root, name, value):
    write_json_atomic(root / name / "metrics.json", {
        "task": "pose_fit", "status": "completed", "main_metric": "err", "mode": "min", "metrics": {"err": value},
        "steps": 10, "wall_time_s": 1.0, "error": None, "overrides": ["task=pose_fit", f"seed={name}"],
    })


def _bad(root, name):
    (root / name).mkdir(parents=True)
    content = BAD[name][0]
    path = root / name / "metrics.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


@pytest.fixture
def mixed(tmp_path):
    _good(tmp_path, "1", 2.0)
    _good(tmp_path, "2", 1.0)
    for name in BAD:
        _bad(tmp_path, name)
    return tmp_path


def test_unreadable_runs_are_rows_with_the_reason(mixed):
    runs = collect_runs(mixed)
    assert len(runs) == 2 + len(BAD)
    header, rows = build_table(runs)
    table = {row[0]: dict(zip(header, row)) for row in rows}
    assert [row[0] for row in rows][:2] == ["2", "1"]  # readable runs first, best first
    for name, (_, reason) in BAD.items():
        assert table[name]["status"] == "unreadable" and reason in table[name]["error"], table[name]
    assert table["1"]["error"] is None


def test_report_prints_them_and_warns_on_stderr(mixed):
    out = run_dwx("report", str(mixed), "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)  # stdout holds the table only
    assert sorted(r["run"] for r in rows if r["status"] == "unreadable") == sorted(BAD)
    warnings = [line for line in out.stderr.splitlines() if line.startswith("dwx: warning:")]
    assert len(warnings) == len(BAD) and "Traceback" not in out.stderr
    assert any(f"{mixed / 'corrupt' / 'metrics.json'} is unreadable: not valid JSON" in w for w in warnings)
    md = (mixed / "report.md").read_text()
    unreadable = md.split("## runs without a readable task")[1]  # one table per task; these have none
    assert md.count("| unreadable |") == unreadable.count("| unreadable |") == len(BAD)
    assert unreadable.strip().splitlines()[0].endswith("| error |")


def test_a_single_unreadable_run(tmp_path):
    (tmp_path / "metrics.json").write_text("{")
    out = run_dwx("report", str(tmp_path))
    assert out.returncode == 0 and "Traceback" not in out.stderr
    assert "| . |  |" in out.stdout and "| unreadable |" in out.stdout
    assert out.stderr.startswith("dwx: warning:") and "unreadable: not valid JSON" in out.stderr


def test_report_errors_go_to_stderr(tmp_path):
    out = run_dwx("report", str(tmp_path))  # an empty folder
    assert out.returncode == 2 and out.stdout == "" and "dwx: error: no metrics.json under" in out.stderr


def test_a_running_record_whose_process_is_gone_is_reported_stale(tmp_path, capsys):
    import socket
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for name, pid in (("killed", dead.pid), ("alive", os.getpid())):
        (tmp_path / name).mkdir()
        record = {"task": "t", "status": "running", "main_metric": "m", "mode": "min", "metrics": {},
                  "overrides": [f"seed={pid}"], "host": socket.gethostname(), "pid": pid}
        (tmp_path / name / "metrics.json").write_text(json.dumps(record))
    runs = {r["run"]: r for r in collect_runs(tmp_path)}
    assert runs["killed"]["status"] == "stale" and "is gone" in runs["killed"]["error"]
    assert runs["alive"]["status"] == "running"


def _run(root, name, task, metric, value, overrides):
    (root / name).mkdir(parents=True)
    record = {"task": task, "status": "completed", "main_metric": metric, "mode": "min", "metrics": {metric: value},
              "steps": 1, "wall_time_s": 1.0, "overrides": [f"task={task}", *overrides]}
    (root / name / "metrics.json").write_text(json.dumps(record))


def test_report_gives_the_spread_over_seeds_and_one_table_per_task(tmp_path):
    from runner.report import markdown_report, seed_table

    for i, (lr, seed, value) in enumerate([("0.1", 0, 0.3), ("0.01", 0, 0.12), ("0.01", 1, 0.15), ("0.1", 1, 0.25),
                                          ("0.01", 2, 0.11)]):
        _run(tmp_path, str(i), "depth_from_video", "abs_rel", value, [f"optim.lr={lr}", f"seed={seed}"])
    _run(tmp_path, "p", "physical_params", "rel_err", 0.01, [])
    runs = collect_runs(tmp_path)
    header, rows = seed_table([r for r in runs if r["task"] == "depth_from_video"])
    assert header == ["task", "optim.lr", "metric", "seeds", "median", "mean", "std", "min", "max", "per seed"]
    assert [row[1] for row in rows] == ["0.01", "0.1"]  # best median first
    assert rows[0][3:6] == [3, 0.12, pytest.approx(0.38 / 3)] and rows[0][-1] == "0:0.12 1:0.15 2:0.11"
    text = markdown_report(runs)
    assert "## depth_from_video" in text and "## physical_params" in text
    assert all(line.count("| task |") <= 1 for line in text.splitlines())  # no second task column
