"""data=photo: a photo of the textured Spot cow (../shared) at a known camera, fitted with a UV texture through
the CLI; the OBJ + MTL + PNG it writes, opened again, reproduce the photo's colours."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import yaml

from runner.errors import ConfigError
from runner.geometry.cameras import PinholeCamera
from runner.geometry.mesh_io import load_obj
from runner.geometry.primitives import icosphere
from runner.render.base import MESHES
from runner.render.soft_mesh import SoftMeshRenderer
from tasks.single_view_recon.data import MeshFile, Photos, load_mesh
from tasks.single_view_recon.fit import FitRecon
from tasks.single_view_recon.metrics import color_error, silhouette_iou
from tasks.single_view_recon.texture import WRAP, periodic, sphere_uvs
from tests.conftest import dwx_env, read_metrics, run_dwx, shared_data

SIZE = 64
ORBIT = {"elevation": 30.0, "azimuth": 45.0, "distance": 2.732, "fov": 30.0}


def _camera() -> PinholeCamera:
    K = PinholeCamera.intrinsics_from_fov(ORBIT["fov"], (SIZE, SIZE))
    pose = PinholeCamera.orbit(torch.tensor([ORBIT["elevation"]]), torch.tensor([ORBIT["azimuth"]]), ORBIT["distance"])
    return PinholeCamera(K, pose, (SIZE, SIZE))


def _render(mesh):
    out = SoftMeshRenderer(hard=True, supersample=4)(mesh, _camera())
    return out.rgb, out.alpha


def test_a_photo_is_fitted_with_a_uv_texture_written_as_obj_mtl_png(tmp_path):
    cow = shared_data("meshes", "spot_cow", "cow.obj")
    rgb, alpha = _render(load_mesh(cow))  # the photo: the textured cow, normalised to the unit cube
    iio.imwrite(tmp_path / "photo.png", (torch.cat([rgb[0], alpha[0, ..., None]], -1).clamp(0, 1).numpy() * 255
                                         + 0.5).astype(np.uint8))
    (tmp_path / "camera.yaml").write_text(yaml.safe_dump(ORBIT))
    run_dir = tmp_path / "run"
    out = run_dwx("run", "task=single_view_recon", "threads=1", "data=photo", f"data.image={tmp_path / 'photo.png'}",
                  f"data.camera={tmp_path / 'camera.yaml'}", "loop.steps=200", "loop.eval_every=200",
                  "loop.image_every=0", "logger=none", f"hydra.run.dir={run_dir}",
                  env=dwx_env(DWX_CACHE=str(tmp_path / "cache")))
    assert out.returncode == 0, out.stderr
    record = read_metrics(run_dir)
    m = record["metrics"]
    assert record["main_metric"] == "silhouette_iou" and "iou_3d" not in m  # no ground-truth mesh given
    assert m["silhouette_iou"] > 0.95
    assert m["color_error"] < 0.08 and m["color_error"] < 0.3 * m["baseline_color_error"]

    art = run_dir / "artifacts"
    obj_text = (art / "reconstruction.obj").read_text()
    assert "mtllib reconstruction.mtl" in obj_text and "\nvt " in obj_text
    assert "map_Kd reconstruction.png" in (art / "reconstruction.mtl").read_text()
    atlas = iio.imread(art / "reconstruction.png")
    assert atlas.shape == (SIZE, 3 * SIZE, 3)  # [H, 2H] texels, plus half again for the seam (texture.WRAP)
    # The files alone (as Blender or MeshLab would read them) give back the fitted colours at the photo's view.
    fitted = load_obj(art / "reconstruction.obj")
    assert fitted.texture is not None and fitted.verts_colors is None
    rgb_again, alpha_again = _render(fitted)
    assert silhouette_iou(alpha_again, alpha) > 0.95
    assert abs(color_error(rgb_again, rgb, alpha) - m["color_error"]) < 0.01


def test_the_sphere_atlas_maps_every_surface_point_to_its_own_texel_across_the_seam():
    """An atlas whose texel at (longitude, latitude) holds the colour (d + 1) / 2 of that direction d, drawn on the
    icosphere through sphere_uvs + periodic, shows each pixel the colour of its own surface direction, from
    views that face the seam (u = 0 | 1, at -z) and the +z side alike."""
    height = 64
    i, j = torch.meshgrid(torch.arange(height), torch.arange(2 * height), indexing="ij")
    lon = ((j + 0.5) / (2 * height) - 0.5) * 2 * torch.pi  # texel centres -> the direction they stand for
    lat = (0.5 - (i + 0.5) / height) * torch.pi
    d = torch.stack([lat.cos() * lon.sin(), lat.sin(), lat.cos() * lon.cos()], -1)
    atlas = periodic((d + 1) / 2)
    assert atlas.shape == (height, round(WRAP * 2 * height), 3)

    sphere = icosphere(4)
    uvs, faces_uvs = sphere_uvs(sphere.verts[0], sphere.faces[0])
    mesh = sphere.with_texture([uvs], [faces_uvs], [atlas])
    renderer = SoftMeshRenderer(hard=True, shading="unlit")
    for azimuth in (180.0, 0.0, 90.0):  # 180: the camera looks at the seam
        K = PinholeCamera.intrinsics_from_fov(30.0, (48, 48))
        cam = PinholeCamera(K, PinholeCamera.orbit(torch.tensor([20.0]), torch.tensor([azimuth]), 5.0), (48, 48))
        out = renderer(mesh, cam)
        origin, ray = (x[0] for x in cam.pixel_rays())  # (H, W, 3) each
        along = (origin * ray).sum(-1)
        reach = along**2 - (origin**2).sum(-1) + 1.0  # the unit sphere: |origin + t ray| = 1
        inside = (out.alpha[0] > 0.99) & (reach > 0.05)  # away from the outline (the icosphere is not round)
        hit = origin + (-along - reach.clamp(min=0).sqrt())[..., None] * ray
        error = (out.rgb[0] - (hit + 1) / 2).abs()[inside]
        assert inside.sum() > 500 and error.mean() < 0.02 and error.max() < 0.1, (azimuth, error.mean(), error.max())


def test_texture_size_is_checked_against_the_renderer_and_the_data():
    class VertexColoursOnly:
        draws = frozenset({MESHES})

    soft = SoftMeshRenderer()
    assert FitRecon._texture_size("auto", Photos("a.png"), soft) == "auto"  # sized from the photo in setup
    assert FitRecon._texture_size("auto", MeshFile("a.obj"), soft) is None  # per-vertex colours
    assert FitRecon._texture_size("auto", Photos("a.png"), VertexColoursOnly()) is None
    assert FitRecon._texture_size([16, 32], None, soft) == [16, 32]
    with pytest.raises(ConfigError, match=r"needs a renderer that draws UV textures .* set task.texture_size=null"):
        FitRecon._texture_size([16, 32], None, VertexColoursOnly())
    with pytest.raises(ConfigError, match="task.texture_size must be auto, null or"):
        FitRecon._texture_size([16, 31], None, soft)
