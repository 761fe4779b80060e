"""`dwx run task=physical_params ...` end to end in a subprocess: run folder, metrics, artifacts, errors."""

from __future__ import annotations

import json

import imageio.v3 as iio
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import read_metrics, run_dwx


@pytest.mark.slow
def test_cli_run_writes_metrics_params_and_video(tmp_path):
    run_dir = tmp_path / "run"
    out = run_dwx(
        "run",
        "task=physical_params",
        "scene=projectile",
        "experiment=physics_tiny",
        "loop.steps=20",
        f"hydra.run.dir={run_dir}",
    )
    assert out.returncode == 0, out.stderr
    m = read_metrics(run_dir)
    assert m["status"] == "completed" and m["main_metric"] == "rel_err" and m["mode"] == "min"
    metrics = m["metrics"]
    for name in ("speed", "angle"):
        assert {name, f"{name}_true", f"rel_err_{name}"} <= set(metrics)
    assert metrics["rel_err"] == max(metrics["rel_err_speed"], metrics["rel_err_angle"])

    params = json.loads((run_dir / "artifacts" / "params.json").read_text())["params"]
    assert params["speed"]["truth"] == metrics["speed_true"]
    assert params["speed"]["estimate"] == pytest.approx(metrics["speed"])
    assert params["speed"]["prior"][0] < params["speed"]["initial"] < params["speed"]["prior"][1]
    gif = iio.imread(run_dir / "artifacts" / "estimate.gif", index=None)
    assert gif.shape[0] == 16 and gif.shape[1] > 256 and gif.shape[2] > 2 * 256  # frames, truth | estimate enlarged

    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "images": 0}).Reload()
    scalars = events.Tags()["scalars"]
    for tag in ("param/speed", "param/speed_true", "metric/rel_err", "loss/pixels"):
        assert tag in scalars, tag
    assert len(events.Scalars("param/speed")) == 20  # the estimate at every step
    assert "frames/target|estimate" in events.Tags()["images"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("data=scene_video data.path=/nonexistent/clip.mp4", "data.path=/nonexistent/clip.mp4: no such file or folder"),
        ("scene=no_such_scene", "unknown scene 'no_such_scene'"),
        ("physics=pendulum", "cannot serve scene Projectile, which needs rigid_contact: choose physics="),
        ("mode=fit", "this task has no modes: mode=fit|learn works with task=depth_from_video or task=single_view"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, override, message):
    out = run_dwx(
        "run", "task=physical_params", "scene=projectile", *override.split(), "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("dwx: error:") and message in lines[0], out.stderr
