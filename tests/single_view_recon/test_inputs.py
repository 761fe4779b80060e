"""The user's inputs: images with masks or alpha, camera files, mesh files; bad inputs give clear errors."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from runner.errors import ConfigError, InputError
from runner.geometry.cameras import PinholeCamera
from tasks.single_view_recon.data import (
    MeshFile,
    Photos,
    ViewConfig,
    image_views,
    load_cameras,
    load_image,
    load_mesh,
)


def _disc(size=32, radius=8):
    v, u = np.mgrid[:size, :size]
    return ((u - size / 2) ** 2 + (v - size / 2) ** 2 < radius**2).astype(np.uint8) * 255


@pytest.fixture
def rgba_png(tmp_path):
    mask = _disc()
    rgba = np.stack([np.full_like(mask, 200), np.full_like(mask, 100), np.full_like(mask, 50), mask], -1)
    path = tmp_path / "object.png"
    iio.imwrite(path, rgba)
    return path


def test_alpha_channel_is_the_mask(rgba_png):
    rgb, mask = load_image(str(rgba_png), None)
    assert rgb.shape == (32, 32, 3) and mask.shape == (32, 32)
    assert mask.sum() == pytest.approx((_disc() > 0).sum())
    assert rgb[0, 0].abs().sum() == 0 and rgb[16, 16, 0] == pytest.approx(200 / 255)  # background blacked out


def test_separate_mask_file(tmp_path):
    iio.imwrite(tmp_path / "img.jpg", np.full((32, 32, 3), 128, np.uint8))
    iio.imwrite(tmp_path / "mask.png", _disc())
    rgb, mask = load_image(str(tmp_path / "img.jpg"), str(tmp_path / "mask.png"))
    assert mask.sum() == pytest.approx((_disc() > 0).sum())


def test_mask_of_another_size_is_rejected(tmp_path):
    iio.imwrite(tmp_path / "img.png", np.zeros((32, 32, 3), np.uint8))
    iio.imwrite(tmp_path / "mask.png", _disc(size=48))
    with pytest.raises(InputError, match="mask .* is 48x48 but data.image .* is 32x32"):
        load_image(str(tmp_path / "img.png"), str(tmp_path / "mask.png"))


def test_empty_mask_is_rejected(tmp_path):
    iio.imwrite(tmp_path / "img.png", np.zeros((32, 32, 3), np.uint8))
    iio.imwrite(tmp_path / "mask.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(InputError, match="empty"):
        load_image(str(tmp_path / "img.png"), str(tmp_path / "mask.png"))


def test_image_without_alpha_or_mask_is_rejected(tmp_path):
    iio.imwrite(tmp_path / "img.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(InputError, match="no alpha channel; give data.mask"):
        load_image(str(tmp_path / "img.png"), None)


def test_unreadable_files(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read"):
        load_image(str(tmp_path / "broken.png"), None)
    with pytest.raises(InputError, match="no such file"):
        load_image(str(tmp_path / "missing.png"), None)
    (tmp_path / "broken.obj").write_text("v 0 0 0\nf 1 2 7\n")
    with pytest.raises(InputError, match="data.path: cannot read"):
        load_mesh(tmp_path / "broken.obj")
    (tmp_path / "mesh.stl").write_text("solid")
    with pytest.raises(InputError, match="not an OBJ or PLY"):
        load_mesh(tmp_path / "mesh.stl")


def test_mesh_is_normalised_to_the_unit_cube(tmp_path):
    (tmp_path / "tet.obj").write_text("v 0 0 0\nv 4 0 0\nv 0 2 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n")
    verts = load_mesh(tmp_path / "tet.obj").verts[0]
    assert torch.allclose(verts.amin(0), torch.tensor([-0.5, -0.25, -0.125]))
    assert torch.allclose(verts.amax(0), torch.tensor([0.5, 0.25, 0.125]))


def test_camera_file_forms(tmp_path):
    orbit = ViewConfig(image_size=32, azimuth=[40.0], elevation=30.0).cameras()
    (tmp_path / "orbit.yaml").write_text("elevation: 30\nazimuth: 40\ndistance: 2.732\n")
    cams = load_cameras(tmp_path / "orbit.yaml", 1, (32, 32), fov=30.0)
    assert torch.allclose(cams.cam_from_world, orbit.cam_from_world, atol=1e-6)
    assert torch.allclose(cams.K, orbit.K)
    explicit = [{"K": orbit.K[0].tolist(), "cam_from_world": orbit.cam_from_world[0].tolist()}] * 2
    (tmp_path / "cams.json").write_text(json.dumps(explicit))
    cams = load_cameras(tmp_path / "cams.json", 2, (32, 32), fov=30.0)
    assert cams.batch_size == 2 and torch.allclose(cams.cam_from_world[1], orbit.cam_from_world[0])
    with pytest.raises(InputError, match="2 camera\\(s\\) for 3 image"):
        load_cameras(tmp_path / "cams.json", 3, (32, 32), fov=30.0)
    (tmp_path / "bad.yaml").write_text("focal: 3\n")
    with pytest.raises(InputError, match="needs K and cam_from_world, or elevation"):
        load_cameras(tmp_path / "bad.yaml", 1, (32, 32), fov=30.0)


def test_image_views_use_the_configured_orbit_without_a_camera_file(rgba_png):
    views = image_views([str(rgba_png)], None, None, ViewConfig(image_size=32), None)
    assert views.fit == [0] and views.heldout == [] and views.mesh is None
    assert isinstance(views.cameras, PinholeCamera) and views.cameras.image_size == (32, 32)
    with pytest.raises(InputError, match="views.image_size=64"):
        image_views([str(rgba_png)], None, None, ViewConfig(image_size=64), None)


def test_view_config_checks_lengths():
    assert ViewConfig(azimuth=24).cameras().batch_size == 24
    with pytest.raises(ConfigError, match="elevation has 2 values but views.azimuth 3"):
        ViewConfig(elevation=[10.0, 20.0], azimuth=[0.0, 1.0, 2.0]).cameras()


def test_the_data_sources_ask_for_their_file():
    with pytest.raises(ConfigError, match=r"^data=mesh needs data.path=<OBJ or PLY file>$"):
        MeshFile(None)
    with pytest.raises(ConfigError, match=r"^data=photo needs data.image="):
        Photos(None)
    assert Photos("a.png").has_shape is False and Photos("a.png", gt_mesh="b.obj").has_shape is True
    assert Photos(["a.png", "b.png"], mask=["a_mask.png", "b_mask.png"]).masks == ["a_mask.png", "b_mask.png"]
