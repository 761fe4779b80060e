"""What the console and run.log show: step lines kept in run.log under a progress bar, job tags in sweeps."""

from __future__ import annotations

import re

from tests.conftest import run_dwx


def test_run_log_keeps_the_step_lines_while_the_console_shows_a_bar(tmp_path):
    run_dir = tmp_path / "run"
    out = run_dwx("run", "task=pose_fit", "loop.steps=20", "loop.progress=bar", "logger=none",
                  f"hydra.run.dir={run_dir}", toy=True)
    assert out.returncode == 0, out.stderr
    log = (run_dir / "run.log").read_text()
    assert "step 10/20  loss" in log and "step 20/20  loss" in log
    assert "step 10/20" not in out.stdout  # the console has the bar instead
    assert "[job" not in log


def test_the_lines_of_a_sweep_name_their_job(tmp_path):
    sweep = tmp_path / "sweep"
    out = run_dwx("run", "-m", "task=pose_fit", "loop.steps=10", "logger=none", "seed=0,1",
                  f"hydra.sweep.dir={sweep}", toy=True)
    assert out.returncode == 0, out.stderr
    for job in (0, 1):
        assert f"[job {job}] step 10/10" in out.stdout
        assert f"[job {job}] step 10/10" in (sweep / str(job) / "run.log").read_text()


def test_the_first_line_names_the_folder_and_the_last_lines_the_next_steps(tmp_path):
    run_dir = tmp_path / "run"
    out = run_dwx("run", "task=pose_fit", "loop.steps=5", "scheduler=warmup", f"hydra.run.dir={run_dir}", toy=True)
    assert out.returncode == 0, out.stderr
    lines = (run_dir / "run.log").read_text().splitlines()
    assert re.search(rf"run folder {re.escape(str(run_dir))}; cpu, \d+ torch threads; setting up pose_fit", lines[0])
    assert "what differs from the defaults: task=pose_fit loop.steps=5 scheduler=warmup" in lines[1]
    assert "the learning-rate warm-up (1000 steps) is not shorter than the run (5 steps)" in out.stdout
    assert f"next: tensorboard --logdir {run_dir / 'tb'} --host 127.0.0.1" in lines[-1]


def test_beats_baseline_compares_the_main_metric_in_its_direction():
    from runner.app import beats_baseline

    assert beats_baseline({"abs_rel": 0.1, "baseline_abs_rel": 0.5}, "abs_rel", "min") is True
    assert beats_baseline({"abs_rel": 0.6, "baseline_abs_rel": 0.5}, "abs_rel", "min") is False
    assert beats_baseline({"iou": 0.6, "baseline_iou": 0.5}, "iou", "max") is True
    assert beats_baseline({"iou": 0.6}, "iou", "max") is None


def test_a_metric_and_its_constant_baseline_share_one_chart(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    from runner.logging import TensorBoardLogger

    logger = TensorBoardLogger(tmp_path / "tb")
    logger.scalars({"loss/total": 1.0}, 1)  # no metric yet: no chart
    logger.scalars({"metric/abs_rel": 0.3, "metric/baseline_abs_rel": 0.5, "metric/a1": 0.6}, 2)
    logger.close()
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0}).Reload()
    layout = layout_pb2.Layout.FromString(acc.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = [(c.title, list(c.multiline.tag)) for cat in layout.category for c in cat.chart]
    assert charts == [("abs_rel", ["metric/abs_rel", "metric/baseline_abs_rel"])]


def test_images_are_enlarged_sharply_and_stacked_to_be_read(tmp_path):
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from runner.logging import TensorBoardLogger, readable_size

    small = torch.rand(1, 4, 6, 3)
    big = readable_size(small)
    assert big.shape == (1, 256, 384, 3) and torch.equal(big[0, :64, :64], small[0, :1, :1].expand(64, 64, 3))
    assert readable_size(torch.rand(1, 8, 1000, 3)).shape == (1, 16, 2000, 3)  # no wider than 2048
    logger = TensorBoardLogger(tmp_path / "tb")
    logger.images("depth", torch.rand(4, 32, 96), 0)  # four 32x96 maps, one above the other at 8x
    logger.close()
    image = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0}).Reload().Images("depth")[0]
    assert (image.height, image.width) == (1024, 768)
