"""mode=fit: the coarse-to-fine template (subdivision mid-run), the blur schedule, and a thin shape fitted from one
view with the default settings."""

from __future__ import annotations

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from runner.geometry.mesh_io import save_obj
from runner.geometry.meshes import Meshes
from runner.geometry.primitives import box, icosphere
from runner.optim import build_optimizer
from tasks.single_view_recon.remesh import level_size, subdivide, unique_edges
from tests.conftest import compose_config


def _edge_face_counts(faces: torch.Tensor) -> torch.Tensor:
    corners = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2).sort(-1).values
    return corners.unique(dim=0, return_counts=True)[1]


@pytest.mark.parametrize("level", [0, 1, 2])
def test_subdivision_gives_the_next_icosphere_watertight(level):
    sphere = icosphere(level)
    verts, faces = subdivide(sphere.verts[0], sphere.faces[0], level)
    finer = icosphere(level + 1)
    assert verts.shape == (level_size(level + 1), 3) and torch.equal(faces, finer.faces[0])
    assert torch.allclose(torch.nn.functional.normalize(verts, dim=-1), finer.verts[0], atol=1e-6)
    assert (_edge_face_counts(faces) == 2).all()  # closed: every edge borders two faces
    assert len(unique_edges(faces)) == 3 * faces.shape[0] // 2


def _thin_shape(path):
    """An L-shaped bar: a long thin rod (0.08 thick) and a short leg, as one OBJ."""
    parts = [box((0.9, 0.08, 0.08), (0.0, 0.0, 0.0)), box((0.08, 0.5, 0.08), (0.41, 0.21, 0.0))]
    verts = torch.cat([parts[0].verts[0], parts[1].verts[0]])
    faces = torch.cat([parts[0].faces[0], parts[1].faces[0] + parts[0].verts[0].shape[0]])
    save_obj(path, Meshes([verts], [faces]))
    return path


def _fit_task(tmp_path, monkeypatch, *overrides):
    monkeypatch.setenv("DWX_CACHE", str(tmp_path / "cache"))
    cfg = compose_config(
        [
            "task=single_view_recon",
            "data=mesh",
            f"data.path={_thin_shape(tmp_path / 'l.obj')}",
            "task.views.image_size=40",
            "task.views.azimuth=[30,120,210,300]",
            "task.fit=[0]",
            "task.num_points=500",
            *overrides,
        ]
    )
    task = instantiate(cfg.task, _convert_="all")
    task.setup(torch.device("cpu"))
    return task, cfg


def _run(task, cfg, steps):
    torch.manual_seed(0)
    opt = build_optimizer(cfg.optim, task.param_groups())
    task.plan(steps)
    for step in range(steps):
        opt.zero_grad()
        sum(task.loss(step).values()).backward()
        opt.step()
    with torch.no_grad():
        return task.evaluate()


def test_refine_keeps_the_shape_and_the_parameter_shapes(tmp_path, monkeypatch):
    task, cfg = _fit_task(tmp_path, monkeypatch, "task.template_level=2", "task.subdivide_at=[0.5]")
    assert task.offsets.shape == (1, level_size(3), 3) == task.color_logits.shape
    _run(task, cfg, 1)  # one step at level 2 (the planned subdivision would come after it)
    assert int(task.level) == 2
    with torch.no_grad():
        before = task.current()
        task.refine()
        after = task.current()
    V = level_size(2)
    assert int(task.level) == 3 and after.verts[0].shape == (level_size(3), 3)
    assert torch.allclose(after.verts[0][:V], before.verts[0], atol=1e-5)  # the old vertices stay
    assert (_edge_face_counts(after.faces[0]) == 2).all()
    assert float(task.offsets.detach().abs().max()) == 0.0
    state = task.state_dict()  # a resumed run rebuilds the finer template from the buffers
    fresh, _ = _fit_task(tmp_path, monkeypatch, "task.template_level=2", "task.subdivide_at=[0.5]")
    fresh.load_state_dict(state)
    with torch.no_grad():
        assert torch.allclose(fresh.current().verts[0], after.verts[0])


def test_blur_narrows_from_start_to_end_in_pixels(tmp_path, monkeypatch):
    task, _ = _fit_task(tmp_path, monkeypatch, "task.coarse_size=null")
    task.plan(100)
    pixel2 = (2 / 40) ** 2
    assert task.fit_renderer(0, 40).sigma == pytest.approx(1.0 * pixel2)
    assert task.fit_renderer(0, 20).sigma == pytest.approx(4.0 * pixel2)  # a pixel of a coarser image is wider
    assert task.fit_renderer(70, 40).sigma == pytest.approx(0.01 * pixel2)
    assert task.fit_renderer(99, 40).sigma == pytest.approx(0.01 * pixel2)
    assert task.renderer.sigma == 1e-4  # the configured renderer itself is untouched


def test_the_coarse_phase_renders_shrunk_targets_then_the_views_own(tmp_path, monkeypatch):
    task, _ = _fit_task(tmp_path, monkeypatch, "task.coarse_size=20", "task.coarse_until=0.5")
    task.plan(10)
    cameras, rgb, mask = task.targets(4, [0])
    assert cameras.image_size == (20, 20) and rgb.shape == (1, 20, 20, 3) and mask.shape == (1, 20, 20)
    assert float(mask.mean()) == pytest.approx(float(task.views.mask[0].mean()), abs=1e-6)  # area kept
    assert torch.allclose(cameras.K[0, :2, :2], task.views.cameras[[0]].K[0, :2, :2] / 2)  # the view at half size
    cameras, rgb, mask = task.targets(5, [0])
    assert cameras.image_size == (40, 40) and torch.equal(mask, task.views.mask[[0]])
    assert "silhouette" in task.loss(4) and "silhouette" in task.loss(5)  # both sizes render
    with pytest.raises(InstantiationException, match="task.coarse_size must be null or a size > 0"):
        _fit_task(tmp_path, monkeypatch, "task.coarse_size=0")


def test_thin_shape_is_fitted_on_its_input_view(tmp_path, monkeypatch):
    task, cfg = _fit_task(tmp_path, monkeypatch, "task.template_level=2")
    metrics = _run(task, cfg, 150)
    assert metrics["baseline_silhouette_iou"] < 0.5  # the initial sphere
    assert metrics["silhouette_iou"] >= 0.9
    summary = task.summary(metrics)
    assert "held-out" in summary and "input view" in summary
