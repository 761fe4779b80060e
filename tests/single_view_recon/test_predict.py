"""`dwx predict` on single_view_recon mode=learn runs: meshes from new RGBA images with the trained encoder, the
dispatch by the run's task, and bad input in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from runner.errors import InputError
from runner.geometry.mesh_io import load_obj
from tasks.depth_from_video.predict import predict_run
from tasks.single_view_recon.predict import load_model, read_rgba
from tests.conftest import dwx_env, run_dwx

STEPS = 6


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny learn run with a weight average (so that its evaluated weights differ from its trained ones), and
    the environment with its data cache."""
    root = tmp_path_factory.mktemp("predict")
    env = dwx_env(DWX_CACHE=str(root / "cache"))
    run_dir = root / "run"
    out = run_dwx(
        "run",
        "task=single_view_recon",
        "mode=learn",
        "experiment=recon_tiny_learn",
        "threads=1",
        f"loop.steps={STEPS}",
        f"loop.eval_every={STEPS}",
        "loop.image_every=0",
        f"loop.checkpoint_every={STEPS}",
        "loop.ema_decay=0.5",
        "logger=none",
        f"hydra.run.dir={run_dir}",
        env=env,
    )
    assert out.returncode == 0, out.stderr
    return run_dir, env


def _error(out) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("dwx: error: "), (out.stdout, out.stderr)
    return lines[0]


def _run_task(run_dir: Path, cache: str, monkeypatch):
    """The run's LearnRecon built in-process from its own config (a folder this test made), with its data set."""
    monkeypatch.setenv("DWX_CACHE", cache)
    task = instantiate(OmegaConf.load(run_dir / ".hydra" / "config.yaml").task, _convert_="all")
    task.setup(torch.device("cpu"))  # the data set, from the run's cache
    return task.eval()


def test_predict_writes_the_mesh_the_trained_encoder_predicts(trained, tmp_path, monkeypatch):
    run_dir, env = trained
    task = _run_task(run_dir, env["DWX_CACHE"], monkeypatch)
    # a test object of the run's data at its evaluation view, with a binary alpha: premultiplied and straight
    # RGBA are then the same, so the PNG holds exactly the network input the task would make of it
    image = task.splits["test"]["images"][0, int(task.eval_views(torch.tensor([0])))].clone()  # (S, S, 4) uint8
    inside = image[..., 3:] >= 128
    image = torch.where(inside, torch.cat([image[..., :3], torch.full_like(image[..., :1], 255)], -1), 0)
    iio.imwrite(tmp_path / "car.png", image.numpy())

    out_dir = tmp_path / "out"
    out = run_dwx("predict", str(run_dir), str(tmp_path / "car.png"), "--out", str(out_dir), env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"wrote 1 mesh (162 vertices, shape only) to {out_dir}"
    mesh = load_obj(out_dir / "car.obj")
    assert mesh.verts[0].shape == (162, 3) and mesh.verts_colors is None
    assert torch.equal(mesh.faces[0], task.template_faces)

    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    x = image.permute(2, 0, 1)[None].float() / 255.0  # as LearnRecon.inputs prepares its images
    with torch.no_grad():
        task.load_state_dict(checkpoint["ema"]["shadow"])  # the weights the run was evaluated with
        expected = task.predict(x)[0]
        task.load_state_dict(checkpoint["task"])
        raw = task.predict(x)[0]
    torch.testing.assert_close(mesh.verts[0], expected, rtol=0, atol=1e-5)
    assert (raw - expected).abs().max() > 1e-3  # the average, not the last trained weights
    # the predictor's own reading of the PNG is the network input
    assert torch.equal(read_rgba(tmp_path / "car.png", 32), x[0])


def test_images_are_premultiplied_padded_and_resized_to_the_training_size(tmp_path):
    rgba = np.zeros((16, 8, 4), np.uint8)
    rgba[4:12, 2:6] = (200, 100, 50, 255)
    rgba[4, 2] = (200, 100, 50, 51)  # a fifth covered: premultiplied to a fifth of its colour
    iio.imwrite(tmp_path / "tall.png", rgba)
    x = read_rgba(tmp_path / "tall.png", 16)  # padded to 16 x 16 around the centre, not stretched
    assert x.shape == (4, 16, 16)
    assert torch.equal(x[3] > 0, torch.nn.functional.pad(torch.from_numpy(rgba[..., 3] > 0), (4, 4)))
    torch.testing.assert_close(x[:, 4, 6], torch.tensor([200 * 0.2, 100 * 0.2, 50 * 0.2, 51]) / 255.0)
    torch.testing.assert_close(x[:3, 5, 6], torch.tensor([200.0, 100.0, 50.0]) / 255.0)
    big = np.repeat(np.repeat(rgba, 2, 0), 2, 1)  # the same image at twice the size: area-averaged back
    iio.imwrite(tmp_path / "big.png", big)
    torch.testing.assert_close(read_rgba(tmp_path / "big.png", 16), x)


def test_bad_inputs_and_runs_without_a_predictor_are_one_line(trained, tmp_path):
    run_dir, env = trained
    rgb = tmp_path / "photo.png"
    iio.imwrite(rgb, np.full((32, 32, 3), 128, np.uint8))
    line = _error(run_dwx("predict", str(run_dir), str(rgb), "--out", str(tmp_path / "out"), env=env))
    assert line == f"dwx: error: {rgb} has no alpha channel; give an RGBA image (alpha = the object's silhouette)"
    line = _error(
        run_dwx("predict", str(run_dir), str(tmp_path / "missing.png"), "--out", str(tmp_path / "out"), env=env)
    )
    assert line == f"dwx: error: dwx predict: no such file {tmp_path / 'missing.png'}"
    assert not (tmp_path / "out").exists()  # nothing is written before every input has been read

    fit = tmp_path / "fit_run"  # a run of mode=fit: its config names FitRecon
    (fit / ".hydra").mkdir(parents=True)
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    cfg.task._target_ = "tasks.single_view_recon.fit.FitRecon"
    OmegaConf.save(cfg, fit / ".hydra" / "config.yaml")
    shutil.copytree(run_dir / "checkpoints", fit / "checkpoints")
    line = _error(run_dwx("predict", str(fit), str(rgb), env=env))
    assert (
        f"{fit} is a run of task=single_view_recon mode=fit (tasks.single_view_recon.fit.FitRecon), which has "
        "no predictor; dwx predict serves runs of task=depth_from_video mode=learn" in line
    )
    assert line.endswith("and task=single_view_recon mode=learn (tasks.single_view_recon.learn.LearnRecon)")


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("template_level", 3, r"checkpoints/last.pt does not fit the run's config \(task.views.image_size, task.templ"),
        ("latent", 32, r"net.encoder.fc.1.weight is \(64, 1024\) in the checkpoint, \(32, 1024\) by the config"),
        ("template_level", "${oc.env:HOME}", r"task.template_level must be an integer in \[0, 4\], got '\$\{oc.env"),
        ("smoothing", -1.0, r"task.smoothing must be a finite number >= 0, got -1.0"),
    ],
)
def test_a_config_that_does_not_fit_the_checkpoint_is_refused_naming_the_key(trained, tmp_path, key, value, message):
    run_dir, _ = trained
    crafted = tmp_path / "run"
    shutil.copytree(run_dir / ".hydra", crafted / ".hydra")
    shutil.copytree(run_dir / "checkpoints", crafted / "checkpoints")
    cfg = OmegaConf.load(crafted / ".hydra" / "config.yaml")
    cfg.task[key] = value
    OmegaConf.save(cfg, crafted / ".hydra" / "config.yaml")
    with pytest.raises(InputError, match=message):
        load_model(crafted)


def test_depth_from_video_predicts_one_input_at_a_time(tmp_path):
    with pytest.raises(
        InputError, match="depth_from_video predicts one input at a time, a folder of frames or a video; got 2"
    ):
        predict_run(tmp_path / "run", [tmp_path / "a", tmp_path / "b"], tmp_path / "out")
