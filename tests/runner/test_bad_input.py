"""Bad input gives one line naming the key and the fix, exit code 2 and no traceback, before any work (issue 25)."""

from __future__ import annotations

import json
import math
import re

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from runner.errors import ConfigError, InputError
from runner.geometry import mesh_io
from runner.geometry.primitives import icosphere
from runner.validation import validate
from tasks.depth_from_video.data import FramesVideo, read_intrinsics
from tasks.single_view_recon.data import load_mesh
from tests.conftest import compose_config, run_dwx

INTRINSICS = {"fx": 50.0, "fy": 50.0, "cx": 47.5, "cy": 15.5, "width": 96, "height": 32}


def _one_line_exit_2(out, *fragments: str) -> None:
    """The process failed with exit code 2 and one ``dwx: error:`` line holding every fragment."""
    assert out.returncode == 2, out.stdout + out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("dwx: error:")]
    assert len(errors) == 1 and "Traceback" not in out.stderr, out.stderr
    assert all(f in errors[0] for f in fragments), errors[0]


# ============================================================================ config values (validate)
PHYSICS, RECON, DEPTH = "experiment=physics_tiny", "experiment=recon_tiny_fit", "experiment=depth_tiny"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (f"{PHYSICS} scheduler=step scheduler.step_size=0", "scheduler.step_size must be a positive integer, got 0"),
        (f"{PHYSICS} scheduler=step scheduler.gamma=nan", "scheduler.gamma must be a positive finite number"),
        (f"{PHYSICS} scheduler=exponential scheduler.gamma=-0.5", "scheduler.gamma must be a positive finite"),
        (f"{PHYSICS} scheduler=cosine scheduler.T_max=0", "scheduler.T_max must be a positive integer"),
        (f"{PHYSICS} scheduler=cosine scheduler.eta_min=inf", "scheduler.eta_min must be a finite number >= 0"),
        (f"{PHYSICS} scheduler=warmup scheduler.total_iters=-1", "scheduler.total_iters must be a positive integer"),
        (f"{PHYSICS} scheduler=warmup scheduler.start_factor=0", "scheduler.start_factor must be a number in (0, 1]"),
        (
            f"{PHYSICS} scheduler=warmup_cosine scheduler.warmup_steps=30",
            "scheduler.warmup_steps must be less than the schedule's length (scheduler.total_steps, null: "
            "loop.steps), got 30 and 30",
        ),
        (f"{PHYSICS} optim.lr=inf", "optim.lr must be a positive finite number, got inf"),
        (f"{PHYSICS} optim.lr=nan", "optim.lr must be a positive finite number, got nan"),
        (f"{RECON} optim.groups.pose.lr=inf", "optim.groups.pose.lr must be a positive finite number"),
        (f"{PHYSICS} loop.clip_grad_norm=inf", "loop.clip_grad_norm must be a positive finite number"),
        (f"{RECON} renderer.sigma=nan", "renderer.sigma must be a positive finite number, got nan"),
        (f"{RECON} renderer.sigma=0", "renderer.sigma must be a positive finite number, got 0"),
        (f"{RECON} renderer.gamma=inf", "renderer.gamma must be a positive finite number"),
        (f"{RECON} renderer.faces_per_pixel=0", "renderer.faces_per_pixel must be a positive integer"),
        (f"{RECON} renderer.znear=200", "renderer.znear must be less than renderer.zfar"),
        (f"{PHYSICS} renderer.sigma_scale=-1", "renderer.sigma_scale must be a positive finite number"),
        (f"{PHYSICS} renderer.max_alpha=1", "renderer.max_alpha must be a number in (0, 1)"),
        (f"{DEPTH} data.image_size=[-32,96]", "data.image_size must be [H, W] or a height H, positive"),
        (f"{DEPTH} data.image_size=[32]", "data.image_size must be [H, W]"),
        (f"{DEPTH} data.image_size=[32.5,96]", "data.image_size must be [H, W]"),
        ("task=depth_from_video data=frames data.frame_stride=0", "data.frame_stride must be a positive integer"),
        ("task=depth_from_video data=seven_scenes data.frame_stride=-2", "data.frame_stride must be a positive"),
        ("task=depth_from_video data=kitti data.image_size=[0,320]", "data.image_size must be [H, W]"),
        (f"{PHYSICS} loop.time_budget=ten", "loop.time_budget='ten': give a duration such as 600"),
        (f"{PHYSICS} loop.time_budget=-5m", "loop.time_budget='-5m': give a duration"),
        (f"{PHYSICS} loop.time_budget=0", "loop.time_budget=0: must be a positive duration"),
    ],
)
def test_out_of_range_config_values_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        validate(compose_config(overrides.split()))


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["experiment=physics_tiny", "scheduler=step", "scheduler.step_size=0"], "scheduler.step_size"),
        (["experiment=physics_tiny", "optim.lr=inf"], "optim.lr"),
        (["experiment=recon_tiny_fit", "renderer.sigma=nan"], "renderer.sigma"),
        (["experiment=depth_tiny", "data.image_size=[-32,96]"], "data.image_size"),
    ],
)
def test_bad_config_values_stop_the_cli_before_the_run(tmp_path, overrides, key):
    out = run_dwx("run", *overrides, "loop.steps=2", "logger=none", f"hydra.run.dir={tmp_path / 'run'}")
    _one_line_exit_2(out, key, f"set {key}=" if key != "data.image_size" else f"{key}=[96,320]")
    assert not (tmp_path / "run").exists()  # refused before Hydra made the run folder


# ============================================================================ intrinsics
@pytest.mark.parametrize(
    "key, value, need",
    [
        ("fx", float("nan"), "a positive finite number"),
        ("fx", 0.0, "a positive finite number"),
        ("fy", -50.0, "a positive finite number"),
        ("fy", float("inf"), "a positive finite number"),
        ("fx", "fifty", "a positive finite number"),
        ("fx", True, "a positive finite number"),
        ("cx", float("nan"), "a number in [0, 96]"),
        ("cy", -1.0, "a number in [0, 32]"),
        ("width", 0, "a positive integer"),
        ("height", 31.5, "a positive integer"),
        ("height", "tall", "a positive integer"),
    ],
)
def test_bad_intrinsics_name_the_key_and_the_file(tmp_path, key, value, need):
    path = tmp_path / "K.yaml"
    path.write_text(json.dumps({**INTRINSICS, key: value}).replace("NaN", ".nan").replace("Infinity", ".inf"))
    with pytest.raises(InputError) as err:
        read_intrinsics(path)
    assert str(err.value).startswith(f"data.intrinsics: {key} must be {need}")
    assert f"(file {path}): fix the file" in str(err.value)


def test_intrinsics_are_checked_when_the_source_is_built(tmp_path):
    path = tmp_path / "K.yaml"
    path.write_text(json.dumps({**INTRINSICS, "fx": -1.0}))
    with pytest.raises(InputError, match="data.intrinsics: fx must be"):
        FramesVideo(str(tmp_path / "frames-not-read"), str(path))  # before any frame is decoded


def _frames(folder, n=12, size=(32, 96)):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        iio.imwrite(folder / f"{i:03d}.png", rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    return folder


def test_nan_focal_length_is_one_line_not_a_segfault(tmp_path):
    (tmp_path / "K.yaml").write_text(json.dumps(INTRINSICS).replace("50.0", ".nan", 1))
    out = run_dwx(
        "run",
        "task=depth_from_video",
        "data=frames",
        f"data.path={_frames(tmp_path / 'frames')}",
        f"data.intrinsics={tmp_path / 'K.yaml'}",
        "data.image_size=[32,96]",
        "data.test_fraction=0",
        "task.batch_size=2",
        "task.coarse_steps=0",
        "task.scales=[0]",
        "loop.steps=2",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    _one_line_exit_2(out, "data.intrinsics: fx must be a positive finite number [px], got nan", "fix the file")
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["steps"] == 0


# ============================================================================ meshes
def _sphere(verts=None):
    mesh = icosphere(2)
    return (mesh.verts[0] if verts is None else verts), mesh.faces[0]


@pytest.mark.parametrize("suffix", [".obj", ".ply"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_mesh_with_nan_or_inf_vertices_is_refused(tmp_path, suffix, bad):
    verts, faces = _sphere()
    verts = verts.clone()
    verts[5, 1] = bad
    path = tmp_path / f"bad{suffix}"
    (mesh_io.save_obj if suffix == ".obj" else mesh_io.save_ply)(path, (verts, faces))
    with pytest.raises(ValueError, match="vertex 6 is not finite"):
        mesh_io.load_mesh(path)
    with pytest.raises(InputError, match=f"^data.path: cannot read {path}: vertex 6 is not finite .*fix or remove it"):
        load_mesh(path)


def test_zero_area_faces_of_coincident_vertices_are_dropped(tmp_path, caplog):
    """The loaded mesh is a target (rendered, sampled, voxelised), never deformed: faces without area add
    nothing to it, so they are dropped with a warning and the rest is used as it is."""
    verts, faces = _sphere()
    verts = verts.clone()
    for a, b, _ in faces[:10].tolist():
        verts[b] = verts[a]  # vertex b moves onto a: every face with both corners loses its area
    mesh_io.save_obj(tmp_path / "m.obj", (verts, faces))
    mesh = load_mesh(tmp_path / "m.obj")
    v = mesh.verts[0][mesh.faces[0]]
    area = torch.linalg.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]).norm(dim=-1)
    assert 0 < len(faces) - len(mesh.faces[0]) < 40 and (area > 0).all()
    assert "zero area" in caplog.text


@pytest.mark.parametrize("collapse", ["point", "line"])
def test_mesh_without_a_surface_is_refused(tmp_path, collapse):
    verts, faces = _sphere()
    verts = torch.zeros_like(verts) if collapse == "point" else verts * torch.tensor([1.0, 0.0, 0.0])
    mesh_io.save_obj(tmp_path / "m.obj", (verts, faces))
    with pytest.raises(InputError, match="every face of .* has zero area .*give a mesh with a surface"):
        load_mesh(tmp_path / "m.obj")


def test_nan_mesh_is_one_line_before_the_fit(tmp_path):
    verts, faces = _sphere()
    verts = verts.clone()
    verts[0, 0] = float("nan")
    mesh_io.save_obj(tmp_path / "m.obj", (verts, faces))
    out = run_dwx(
        "run",
        "experiment=recon_tiny_fit",
        "data=mesh",
        f"data.path={tmp_path / 'm.obj'}",
        "loop.steps=2",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    _one_line_exit_2(out, "data.path: cannot read", "vertex 1 is not finite", "fix or remove it")


# ============================================================================ dwx data export
def test_export_onto_an_existing_file_or_non_empty_folder_is_refused(tmp_path):
    (tmp_path / "file").write_text("keep me")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    for name, what in (("file", "already exists;"), ("full", "already exists and is not empty")):
        out = run_dwx("data", "export", str(tmp_path / name), "experiment=depth_tiny")
        _one_line_exit_2(out, str(tmp_path / name), what, "choose a new folder")
    assert (tmp_path / "file").read_text() == "keep me"
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["x"]


@pytest.mark.parametrize("task", ["physical_params", "single_view_recon"])
def test_export_of_a_task_without_exportable_data_names_the_task_that_has_it(tmp_path, task):
    out = run_dwx("data", "export", str(tmp_path / "out"), f"task={task}")
    _one_line_exit_2(out, f"task={task} has no data set to export", "(data=frames, kitti, seven_scenes, streets)")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sigma", [math.nan, math.inf, 0.0, -1e-4])
def test_task_sigma_overrides_must_be_positive_and_finite(sigma):
    from runner.render.soft_mesh import SoftMeshRenderer
    from tasks.single_view_recon.task import with_sigma

    with pytest.raises(ConfigError, match="task.refine_sigma needs .* a finite value > 0"):
        with_sigma(SoftMeshRenderer(sigma=1e-4), sigma, "refine_sigma")
