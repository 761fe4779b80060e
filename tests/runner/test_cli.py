"""The dwx command end to end, in subprocesses, on the test-local pose-fitting task."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import FIXTURES, ROOT, dwx_env, read_metrics, run_dwx


def test_help_and_list():
    out = run_dwx("--help")
    assert out.returncode == 0 and "run" in out.stdout and "report" in out.stdout
    out = run_dwx("list")
    assert out.returncode == 0
    assert "optimisers (optim=<name>):" in out.stdout and "lbfgs" in out.stdout
    assert "Adam (Kingma & Ba, ICLR 2015)" in out.stdout


def test_tasks_register_their_commands_and_the_cli_imports_no_task():
    """A task's subcommand (depth_from_video's export) comes from the dwx.commands entry points, and dwx predict
    finds each task's predictor through dwx.predictors only when it runs; building the parser imports only the light
    registration module, neither a task's code nor torch."""
    probe = (
        "import sys\nfrom runner import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('tasks.') or m == 'torch'))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, env=dwx_env())
    assert out.returncode == 0, out.stderr
    assert "predict" in out.stdout.split("options:")[0] and "export" in out.stdout.split("options:")[0]
    assert out.stdout.strip().splitlines()[-1] == "['tasks.depth_from_video', 'tasks.depth_from_video.commands']"
    out = run_dwx("predict", "--help")
    assert out.returncode == 0 and "RUN_DIR" in out.stdout.upper() and "--out" in out.stdout


def test_run_help_shows_config_groups():
    out = run_dwx("run", "--help")
    assert out.returncode == 0
    assert "== Config groups ==" in out.stdout and "optim: adam, adamw, lbfgs, sgd" in out.stdout


def test_run_writes_complete_run_folder(tmp_path):
    run_dir = tmp_path / "run"
    out = run_dwx(
        "run",
        "task=pose_fit",
        "optim.lr=0.05",
        "loop.steps=200",
        "loop.image_every=100",
        f"hydra.run.dir={run_dir}",
        toy=True,
    )
    assert out.returncode == 0, out.stderr
    m = read_metrics(run_dir)
    assert m["status"] == "completed" and m["steps"] == 200 and m["error"] is None
    assert m["main_metric"] == "rot_err_deg" and m["mode"] == "min"
    assert m["metrics"]["rot_err_deg"] < 0.5  # converged to the true pose
    assert m["versions"]["torch"] == torch.__version__
    assert m["overrides"] == ["task=pose_fit", "optim.lr=0.05", "loop.steps=200", "loop.image_every=100"]
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", "run.log", "checkpoints/last.pt"):
        assert (run_dir / name).is_file(), name
    assert "done: rot_err_deg=" in (run_dir / "run.log").read_text()
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 200

    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "images": 0}).Reload()
    tags = events.Tags()
    for tag in (
        "loss/fit",
        "loss/reg",
        "loss/total",
        "metric/rot_err_deg",
        "metric/t_err",
        "lr/rotation",
        "lr/translation",
        "time/step_s",
        "grad/norm_max",
    ):
        assert tag in tags["scalars"], tag
    assert [e.step for e in events.Scalars("metric/rot_err_deg")] == [100, 200]
    assert events.Scalars("lr/rotation")[0].value == pytest.approx(0.05)
    peaks = [e.value for e in events.Scalars("grad/norm_max")]
    assert len(peaks) == 20 and all(0 < v < float("inf") for v in peaks)  # one per log line (log_every 10)
    assert "points/xy" in tags["images"]
    image = events.Images("points/xy")[0]  # the toy task's 8x8 picture, enlarged to be seen
    assert (image.height, image.width) == (256, 256)
    assert any("config" in t for t in tags["tensors"])


def test_hparams_logged(tmp_path):
    run_dir = tmp_path / "run"
    out = run_dwx("run", "task=pose_fit", "optim.lr=0.05", "loop.steps=20", f"hydra.run.dir={run_dir}", toy=True)
    assert out.returncode == 0, out.stderr
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import plugin_data_pb2

    mux = EventMultiplexer().AddRunsFromDirectory(str(run_dir / "tb"))
    mux.Reload()
    content = mux.PluginRunToTagToContent("hparams")
    sessions = [plugin_data_pb2.HParamsPluginData.FromString(c) for tags in content.values() for c in tags.values()]
    starts = [s.session_start_info for s in sessions if s.HasField("session_start_info")]
    assert starts and starts[0].hparams["optim.lr"].number_value == pytest.approx(0.05)
    assert starts[0].hparams["loop.steps"].string_value == "20"  # integers as written, not 20.0
    experiment = [s.experiment for s in sessions if s.HasField("experiment")][0]
    assert [m.name.tag for m in experiment.metric_infos][0] == "metric/rot_err_deg"  # the main metric first
    scalars = [t for run in mux.Runs() for t in mux.GetAccumulator(run).Tags()["scalars"]]
    assert "metric/rot_err_deg" in scalars and not [t for t in scalars if t.startswith("hparam")]  # no clutter


@pytest.mark.parametrize(
    "args, expected",
    [
        (["task=nope"], "unknown task 'nope'"),
        ([], "no task given: add task=<name>"),
        (["+task.num_points=3"], "no task given: add task=<name>"),
        (["task=pose_fit", "loop.stepz=3"], "unknown key 'loop.stepz' (did you mean loop.steps?)"),
        (["task=pose_fit", "optim.lr=-1"], "optim.lr must be a positive finite number"),
        (["task=pose_fit", "loop.steps=0"], "loop.steps must be a positive integer"),
        (["task=pose_fit", "loop.steps=abc"], "loop.steps must be a positive integer, got 'abc'"),
        (["task=pose_fit", "optim=adan"], "(did you mean optim=adam?)"),
        (["task=pose_fit", "device=gpu"], "device must be auto, cpu, cuda"),
        (["task=pose_fit", "task.num_points=1"], "task.num_points must be >= 3"),
        (["task=pose_fit", "resume=/nonexistent/run"], "not a dwx run folder"),
        (["task=pose_fit", "loop.ema_decay=1.5"], "loop.ema_decay must be in (0, 1) or null, got 1.5"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, args, expected):
    out = run_dwx("run", *args, f"hydra.run.dir={tmp_path / 'run'}", toy=True)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dwx: error: ") and expected in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_debug_flag_shows_traceback(tmp_path):
    out = run_dwx("--debug", "run", "task=pose_fit", "task.num_points=1", f"hydra.run.dir={tmp_path}", toy=True)
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_failed_run_records_status(tmp_path):
    run_dir = tmp_path / "run"
    out = run_dwx("run", "task=pose_fit", "task.fail_on_setup=true", f"hydra.run.dir={run_dir}", toy=True)
    assert out.returncode == 1
    m = read_metrics(run_dir)
    assert m["status"] == "failed" and m["error"] == "setup failed on purpose"


def test_nonfinite_loss_stops_with_named_term_and_keeps_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    out = run_dwx("run", "task=pose_fit", "task.nan_at_step=5", f"hydra.run.dir={run_dir}", toy=True)
    assert out.returncode == 1
    m = read_metrics(run_dir)
    assert m["status"] == "failed"
    assert "non-finite loss at step 5: loss/fit=nan" in m["error"]
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 5 and torch.isfinite(ckpt["task"]["rot"]).all()


def test_nonfinite_skip_mode_completes(tmp_path):
    run_dir = tmp_path / "run"
    out = run_dwx(
        "run",
        "task=pose_fit",
        "task.nan_at_step=15",
        "loop.nonfinite=skip",
        "loop.max_skipped_fraction=0.25",
        "loop.steps=20",
        f"hydra.run.dir={run_dir}",
        toy=True,
    )
    assert out.returncode == 0, out.stderr
    m = read_metrics(run_dir)
    assert m["status"] == "completed" and m["skipped_steps"] == 5
    assert "step skipped" in (run_dir / "run.log").read_text()


def _sigint_after_first_checkpoint(args: list[str], run_dir) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "runner.cli",
        "run",
        "--config-dir",
        str(FIXTURES / "configs"),
        *args,
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dwx_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (run_dir / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.parametrize("ema", [[], ["loop.ema_decay=0.9"]], ids=["trained-weights", "weight-average"])
def test_sigint_checkpoints_and_resume_matches_uninterrupted_run(tmp_path, ema):
    common = [
        *ema,
        "task=pose_fit",
        "task.batch=32",
        "task.step_delay_s=0.01",
        "optim.lr=0.03",
        "loop.steps=120",
        "loop.checkpoint_every=10",
        "loop.eval_every=40",
        "scheduler=cosine",
    ]
    full = tmp_path / "full"
    assert run_dwx("run", *common, f"hydra.run.dir={full}", toy=True).returncode == 0

    part = tmp_path / "part"
    out = _sigint_after_first_checkpoint(common, part)
    assert out.returncode == 128 + signal.SIGINT, out.stderr
    m = read_metrics(part)
    assert m["status"] == "interrupted" and 0 < m["steps"] < 120
    assert torch.load(part / "checkpoints" / "last.pt", weights_only=True)["step"] == m["steps"]

    out = run_dwx("run", f"resume={part}", toy=True)
    assert out.returncode == 0, out.stderr
    resumed, uninterrupted = read_metrics(part), read_metrics(full)
    assert resumed["status"] == "completed" and resumed["steps"] == 120
    assert resumed["metrics"] == uninterrupted["metrics"]  # bit-identical on the CPU


def test_multirun_grid_and_isolated_failure(tmp_path):
    sweep = tmp_path / "sweep"
    out = run_dwx(
        "run",
        "-m",
        "task=pose_fit",
        "loop.steps=10",
        "task.fail_on_setup=false,true",
        "optim.lr=0.01,0.05",
        f"hydra.sweep.dir={sweep}",
        toy=True,
    )
    assert out.returncode == 0, out.stderr
    records = [read_metrics(sweep / str(i)) for i in range(4)]
    statuses = sorted(r["status"] for r in records)
    assert statuses == ["completed", "completed", "failed", "failed"]
    assert all(r["error"] == "setup failed on purpose" for r in records if r["status"] == "failed")


def test_works_from_another_directory(tmp_path):
    out = run_dwx("run", "task=pose_fit", "loop.steps=5", cwd=tmp_path, toy=True)
    assert out.returncode == 0, out.stderr
    runs = list((tmp_path / "outputs" / "pose_fit").iterdir())
    assert len(runs) == 1 and read_metrics(runs[0])["status"] == "completed"
