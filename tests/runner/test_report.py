"""dwx report: a table of runs parsed back in each format."""

from __future__ import annotations

import csv
import io
import json

from runner.record import write_json_atomic
from tests.conftest import run_dwx


def _fake_run(root, name, lr, value, status="completed"):
    write_json_atomic(
        root / name / "metrics.json",
        {
            "task": "pose_fit",
            "status": status,
            "main_metric": "rot_err_deg",
            "mode": "min",
            "metrics": {"rot_err_deg": value} if value is not None else {},
            "steps": 10,
            "wall_time_s": 1.0,
            "error": None if status == "completed" else "boom",
            "overrides": ["task=pose_fit", f"optim.lr={lr}"],
        },
    )


def test_report_orders_best_first_and_parses_back(tmp_path):
    _fake_run(tmp_path, "0", 0.1, 3.0)
    _fake_run(tmp_path, "1", 0.01, 1.0)
    _fake_run(tmp_path, "2", 0.001, None, status="failed")
    out = run_dwx("report", str(tmp_path), "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["optim.lr"] for r in rows] == ["0.01", "0.1", "0.001"]
    assert [r["status"] for r in rows] == ["completed", "completed", "failed"]
    assert "task=" not in out.stdout  # overrides common to every run are not columns
    rows = list(csv.DictReader(io.StringIO(run_dwx("report", str(tmp_path), "--format", "csv").stdout)))
    assert float(rows[0]["rot_err_deg"]) == 1.0
    out = run_dwx("report", str(tmp_path))
    md = out.stdout.splitlines()
    assert md[0].startswith("| run | task | optim.lr | status") and len(md) == 5
    assert (tmp_path / "report.md").is_file()
    assert out.stderr.strip().splitlines()[-1] == f"dwx: wrote {tmp_path / 'report.md'} and {tmp_path / 'report.png'}"


def test_report_on_a_missing_folder_is_an_error(tmp_path):
    out = run_dwx("report", str(tmp_path / "nothing"))
    assert out.returncode == 2 and "does not exist" in out.stderr
