"""single_view_recon end to end through the `dwx` CLI: fit, learn, artifacts, TensorBoard, bad inputs."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from runner.geometry.mesh_io import load_obj, save_obj
from runner.geometry.primitives import ellipsoid
from tests.conftest import dwx_env, read_metrics, run_dwx


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A private data cache shared by the tests of this module."""
    return dwx_env(DWX_CACHE=str(tmp_path_factory.mktemp("cache")))


def test_tiny_fit_from_the_cli(tmp_path, env):
    run_dir = tmp_path / "run"
    out = run_dwx("run", "task=single_view_recon", "threads=1", "mode=fit", "experiment=recon_tiny_fit",
                  f"hydra.run.dir={run_dir}", env=env)
    assert out.returncode == 0, out.stderr
    m = read_metrics(run_dir)
    assert m["status"] == "completed" and m["main_metric"] == "iou_3d" and m["mode"] == "max"
    for key in ("iou_3d", "iou_3d_parity", "chamfer", "fscore", "silhouette_iou", "silhouette_iou_heldout"):
        assert key in m["metrics"], key
    obj = load_obj(run_dir / "artifacts" / "reconstruction.obj")
    assert obj.verts[0].shape == (162, 3) and obj.verts_colors is not None
    gif = iio.imread(run_dir / "artifacts" / "reconstruction_turntable.gif", index=None)
    assert gif.shape[0] == 24 and gif.shape[1:3] == (256, 256)  # 32 px views, enlarged 8x to be looked at
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0, "scalars": 0}).Reload()
    sil = [e.value for e in events.Scalars("metric/silhouette_iou")]
    assert len(sil) == 2 and sil[1] > sil[0] > 0.6  # the sphere moves towards the table's outline
    tags = events.Tags()
    for tag in ("fit/target_vs_silhouette_vs_rgb", "heldout/target_vs_silhouette_vs_rgb", "turntable"):
        assert tag in tags["images"], tag
    assert "metric/silhouette_iou_heldout" in tags["scalars"] and any("mesh" in t for t in tags["tensors"])


def test_fit_recovers_an_ellipsoid_from_its_silhouettes(tmp_path, env):
    path = tmp_path / "ellipsoid.obj"
    save_obj(path, ellipsoid((0.5, 0.3, 0.2), level=3))
    run_dir = tmp_path / "run"
    out = run_dwx("run", "task=single_view_recon", "threads=1", "mode=fit", "data=mesh", f"data.path={path}",
                  "task.views.image_size=48", "task.views.azimuth=6", "task.fit=[0,1,2,3,4]", "task.views_per_step=5",
                  "renderer.sigma=5e-5", "task.smoothing=10", "task.losses.rgb=0", "task.optimize_color=false",
                  "task.num_points=3000",
                  "loop.steps=120", "loop.eval_every=120", "loop.image_every=0", "logger=none",
                  f"hydra.run.dir={run_dir}", env=env)
    assert out.returncode == 0, out.stderr
    m = read_metrics(run_dir)["metrics"]
    assert m["iou_3d"] > 0.85 and m["silhouette_iou_heldout"] > 0.9


@pytest.mark.slow
def test_tiny_learned_run_lowers_its_loss_and_beats_the_mean_shape(tmp_path, env):
    run_dir = tmp_path / "run"
    out = run_dwx("run", "task=single_view_recon", "threads=1", "mode=learn", "experiment=recon_tiny_learn",
                  "task.refine_steps=50", f"hydra.run.dir={run_dir}", env=env)
    assert out.returncode == 0, out.stderr
    m = read_metrics(run_dir)["metrics"]
    assert m["iou_3d"] > m["baseline_iou_3d"]
    # test-time refinement fits the input view: its silhouette IoU rises (0.64 -> 0.81 measured)
    assert m["silhouette_iou_refined"] > m["silhouette_iou"] + 0.05
    assert "mean-shape baseline" in (run_dir / "run.log").read_text()
    loss = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0}).Reload().Scalars("loss/silhouette")
    first, last = np.mean([e.value for e in loss[:2]]), np.mean([e.value for e in loss[-2:]])
    assert last < 0.8 * first


def _error(out):
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dwx: error: "), out.stderr
    return lines[0]


def test_bad_inputs_give_one_line_errors(tmp_path, env):
    iio.imwrite(tmp_path / "img.png", np.full((32, 32, 3), 100, np.uint8))
    iio.imwrite(tmp_path / "small_mask.png", np.full((16, 16), 255, np.uint8))
    iio.imwrite(tmp_path / "empty_mask.png", np.zeros((32, 32), np.uint8))
    (tmp_path / "broken.obj").write_text("v 0 0 0\nf 1 2 3\n")
    base = ["run", "task=single_view_recon", "threads=1", "logger=none", f"hydra.run.dir={tmp_path / 'run'}"]
    image = ["data=photo", f"data.image={tmp_path / 'img.png'}", "task.views.image_size=32"]
    line = _error(run_dwx(*base, *image, f"data.mask={tmp_path / 'small_mask.png'}", env=env))
    assert "is 16x16 but data.image" in line
    line = _error(run_dwx(*base, *image, f"data.mask={tmp_path / 'empty_mask.png'}", env=env))
    assert "empty" in line
    line = _error(run_dwx(*base, "data=mesh", f"data.path={tmp_path / 'broken.obj'}", env=env))
    assert "data.path: cannot read" in line and "broken.obj" in line
