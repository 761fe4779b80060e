"""OBJ/PLY reading and writing: round trips, hand-written files, real meshes, errors."""

import numpy as np
import pytest
import torch

from runner.geometry.mesh_io import load_mesh, load_obj, load_ply, normalize_to_unit_cube, save_obj, save_ply
from runner.geometry.meshes import Meshes
from runner.geometry.primitives import box, icosphere
from tests.conftest import shared_data


def colored_sphere(dtype=torch.float32):
    m = icosphere(1, dtype=dtype)
    colors = torch.rand(42, 3, generator=torch.Generator().manual_seed(0), dtype=dtype)
    return m.with_colors([colors])


# ---------------------------------------------------------------------- OBJ
def test_obj_round_trip_with_vertex_colors(tmp_path):
    m = colored_sphere()
    save_obj(tmp_path / "s.obj", m)
    assert (tmp_path / "s.obj").read_text().splitlines()[0].count(" ") == 6  # v x y z r g b
    r = load_obj(tmp_path / "s.obj")
    assert torch.equal(r.verts[0], m.verts[0])  # 9 significant digits round-trip float32 exactly
    assert torch.equal(r.faces[0], m.faces[0])
    assert torch.equal(r.verts_colors[0], m.verts_colors[0])
    assert r.verts_uvs is None and r.texture is None
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_obj_round_trip_float64_is_exact(tmp_path):
    m = Meshes([torch.randn(30, 3, dtype=torch.float64)], [torch.randint(0, 30, (40, 3))])
    save_obj(tmp_path / "d.obj", m)
    assert torch.equal(load_obj(tmp_path / "d.obj", dtype=torch.float64).verts[0], m.verts[0])


def test_obj_round_trip_with_uvs_and_texture(tmp_path):
    g = torch.Generator().manual_seed(1)
    base = box(1.0)
    uvs = torch.rand(10, 2, generator=g)
    faces_uvs = torch.randint(0, 10, (12, 3), generator=g)
    texture = torch.randint(0, 256, (6, 8, 3), generator=g).float() / 255
    m = Meshes(base.verts, base.faces, verts_uvs=[uvs], faces_uvs=[faces_uvs], texture=[texture])
    save_obj(tmp_path / "textured.obj", m)
    assert (tmp_path / "textured.mtl").is_file() and (tmp_path / "textured.png").is_file()
    r = load_obj(tmp_path / "textured.obj")
    assert torch.equal(r.faces[0], m.faces[0])
    assert torch.equal(r.verts_uvs[0], uvs)
    assert torch.equal(r.faces_uvs[0], faces_uvs)
    assert r.texture[0].shape == (6, 8, 3)
    assert torch.allclose(r.texture[0], texture, atol=1e-6)


def test_obj_polygons_relative_indices_and_normal_forms(tmp_path):
    path = tmp_path / "quad.obj"
    path.write_text(
        "# a unit square as one quad, then a triangle with negative indices and v//vn\n"
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvn 0 0 1\n"
        "g square\nf 1//1 2//1 3//1 4//1\n"
        "v 2 0 0\nf -3//1 -1//1 -4//1\n"
    )
    m = load_obj(path)
    assert m.verts[0].shape == (5, 3)
    assert m.faces[0].tolist() == [[0, 1, 2], [0, 2, 3], [2, 4, 1]]
    assert m.verts_uvs is None


def test_obj_texture_coordinates_without_material(tmp_path):
    path = tmp_path / "uv.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1 0\nf 1/3 2/2 3/1\n")
    with pytest.raises(ValueError, match="'vt' lines must all have"):
        load_obj(path)
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nf 1/3 2/2 3/1\n")
    m = load_obj(path)
    assert m.faces_uvs[0].tolist() == [[2, 1, 0]] and m.texture is None


def test_save_ply_and_obj_accept_a_verts_faces_pair(tmp_path):
    verts, faces = box(2.0).verts[0], box(2.0).faces[0]
    save_obj(tmp_path / "b.obj", (verts, faces))
    save_ply(tmp_path / "b.ply", (verts, faces))
    for name in ("b.obj", "b.ply"):
        r = load_mesh(tmp_path / name)
        assert torch.equal(r.verts[0], verts) and torch.equal(r.faces[0], faces)


# ---------------------------------------------------------------------- PLY
@pytest.mark.parametrize("binary", [True, False])
def test_ply_round_trip_with_colors(tmp_path, binary):
    m = colored_sphere()
    save_ply(tmp_path / "s.ply", m, binary=binary)
    header = (tmp_path / "s.ply").read_bytes()[:60].decode("ascii", errors="replace")
    assert ("binary_little_endian" in header) == binary
    r = load_ply(tmp_path / "s.ply")
    assert torch.equal(r.verts[0], m.verts[0]) and torch.equal(r.faces[0], m.faces[0])
    assert (r.verts_colors[0] - m.verts_colors[0]).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit colours


@pytest.mark.parametrize("binary", [True, False])
def test_ply_round_trip_float64_is_exact(tmp_path, binary):
    m = Meshes([torch.randn(30, 3, dtype=torch.float64)], [torch.randint(0, 30, (40, 3))])
    save_ply(tmp_path / "d.ply", m, binary=binary)
    assert b"property double x" in (tmp_path / "d.ply").read_bytes()[:200]
    r = load_ply(tmp_path / "d.ply", dtype=torch.float64)
    assert torch.equal(r.verts[0], m.verts[0]) and torch.equal(r.faces[0], m.faces[0])
    assert r.verts_colors is None


def ply_header(fmt, n_verts, n_faces, extra=""):
    return (f"ply\nformat {fmt} 1.0\nelement vertex {n_verts}\nproperty float x\nproperty float y\n"
            f"property float z\n{extra}element face {n_faces}\nproperty list uchar int vertex_indices\n"
            "end_header\n").encode()


def test_binary_big_endian_ply_with_quads_and_float_colors(tmp_path):
    verts = np.array([[0, 0, 0, 1, 0, 0], [1, 0, 0, 0, 1, 0], [1, 1, 0, 0, 0, 1], [0, 1, 0, 1, 1, 1]], ">f4")
    extra = "property float red\nproperty float green\nproperty float blue\n"
    faces = b"".join([np.array([4], "u1").tobytes(), np.array([0, 1, 2, 3], ">i4").tobytes(),
                      np.array([3], "u1").tobytes(), np.array([0, 2, 1], ">i4").tobytes()])
    (tmp_path / "q.ply").write_bytes(ply_header("binary_big_endian", 4, 2, extra) + verts.tobytes() + faces)
    m = load_ply(tmp_path / "q.ply")
    assert m.faces[0].tolist() == [[0, 1, 2], [0, 2, 3], [0, 2, 1]]
    assert torch.equal(m.verts[0], torch.tensor(verts[:, :3].astype(np.float32)))
    assert torch.equal(m.verts_colors[0], torch.tensor(verts[:, 3:].astype(np.float32)))


def test_ascii_ply_with_quad(tmp_path):
    body = b"0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n"
    (tmp_path / "q.ply").write_bytes(ply_header("ascii", 4, 1) + body)
    assert load_ply(tmp_path / "q.ply").faces[0].tolist() == [[0, 1, 2], [0, 2, 3]]


# ---------------------------------------------------------------------- normalisation
def test_normalize_to_unit_cube():
    verts = torch.tensor([[[1.0, 2.0, 3.0], [3.0, 3.0, 4.0], [2.0, 2.5, 3.5]],
                          [[0.0, 0.0, 0.0], [0.0, 10.0, 0.0], [1.0, 0.0, 0.0]]])
    out = normalize_to_unit_cube(verts)
    lo, hi = out.min(1).values, out.max(1).values
    assert torch.allclose(lo + hi, torch.zeros(2, 3), atol=1e-6)  # bounding box centred
    assert torch.allclose((hi - lo).max(-1).values, torch.ones(2))  # longest side 1
    assert torch.allclose(out[0, 1], torch.tensor([0.5, 0.25, 0.25]))
    with pytest.raises(ValueError, match="coincide"):
        normalize_to_unit_cube(torch.ones(4, 3))
    with pytest.raises(ValueError, match=r"\(\.\.\., V, 3\)"):
        normalize_to_unit_cube(torch.ones(4, 2))


# ---------------------------------------------------------------------- errors
def test_missing_file_and_unsupported_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_mesh(tmp_path / "nope.obj")
    (tmp_path / "m.stl").write_text("solid x\n")
    with pytest.raises(ValueError, match="unsupported mesh format '.stl'"):
        load_mesh(tmp_path / "m.stl")
    (tmp_path / "m.ply").write_text("ply\nformat binary_middle_endian 1.0\nend_header\n")
    with pytest.raises(ValueError, match="unsupported PLY format"):
        load_ply(tmp_path / "m.ply")


def test_obj_index_out_of_range_names_the_line(tmp_path):
    path = tmp_path / "bad.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\nf 1 2 4\n")
    with pytest.raises(ValueError, match=r"bad.obj:5: face v index 4 out of range"):
        load_obj(path)
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 -4\n")
    with pytest.raises(ValueError, match="out of range"):
        load_obj(path)


def test_obj_without_faces_or_with_mixed_forms(tmp_path):
    path = tmp_path / "points.obj"
    path.write_text("v 0 0 0\nv 1 0 0\n")
    with pytest.raises(ValueError, match="no faces"):
        load_obj(path)
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/1 3\n")
    with pytest.raises(ValueError, match="mix the forms"):
        load_obj(path)
    path.write_text("v 0 0 0\nv 1 0 0\nf 1 2\n")
    with pytest.raises(ValueError, match="at least 3 vertices"):
        load_obj(path)
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1/ 2/1/ 3/1/\n")
    with pytest.raises(ValueError, match="malformed face tokens"):
        load_obj(path)
    path.write_text("v 0 0 zero\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(ValueError, match="malformed 'v' line"):
        load_obj(path)


def test_ply_errors(tmp_path):
    (tmp_path / "z.ply").write_bytes(ply_header("ascii", 3, 0) + b"0 0 0\n1 0 0\n0 1 0\n")
    with pytest.raises(ValueError, match="no faces"):
        load_ply(tmp_path / "z.ply")
    (tmp_path / "r.ply").write_bytes(ply_header("ascii", 3, 1) + b"0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n")
    with pytest.raises(ValueError, match="index 3 out of range"):
        load_ply(tmp_path / "r.ply")
    (tmp_path / "t.ply").write_bytes(ply_header("binary_little_endian", 3, 1) + b"\x00" * 10)
    with pytest.raises(ValueError, match="ends inside element 'vertex'"):
        load_ply(tmp_path / "t.ply")
    (tmp_path / "v.ply").write_bytes(ply_header("ascii", 3, 1) + b"0 0 0\n1 0\n0 1 0\n3 0 1 2\n")
    with pytest.raises(ValueError, match="vertex rows must have 3 values"):
        load_ply(tmp_path / "v.ply")
    (tmp_path / "n.ply").write_text("solid\n")
    with pytest.raises(ValueError, match="not a PLY file"):
        load_ply(tmp_path / "n.ply")


def test_missing_texture_is_reported_and_can_be_skipped(tmp_path):
    (tmp_path / "m.mtl").write_text("newmtl skin\nmap_Kd skin.png\n")
    (tmp_path / "m.obj").write_text("mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\n"
                                    "usemtl skin\nf 1/1 2/2 3/3\n")
    with pytest.raises(FileNotFoundError, match="skin.png not found; pass load_textures=False"):
        load_obj(tmp_path / "m.obj")
    m = load_obj(tmp_path / "m.obj", load_textures=False)
    assert m.faces[0].tolist() == [[0, 1, 2]] and m.verts_uvs is None and m.texture is None


def test_save_rejects_ambiguous_or_broken_meshes(tmp_path):
    pair = Meshes(box().verts * 2, box().faces * 2)
    with pytest.raises(ValueError, match="pass index=b"):
        save_obj(tmp_path / "x.obj", pair)
    save_obj(tmp_path / "x.obj", pair, index=1)
    with pytest.raises(ValueError, match="index 2 out of range"):
        save_ply(tmp_path / "x.ply", pair, index=2)
    with pytest.raises(ValueError, match="zero faces"):
        save_ply(tmp_path / "x.ply", (torch.zeros(3, 3), torch.zeros(0, 3, dtype=torch.int64)))
    with pytest.raises(ValueError, match="face index out of range"):
        save_obj(tmp_path / "y.obj", (torch.zeros(3, 3), torch.tensor([[0, 1, 3]])))
    assert not (tmp_path / "y.obj").exists()


# ---------------------------------------------------------------------- real meshes
def test_load_spot_cow_with_texture():
    m = load_mesh(shared_data("meshes", "spot_cow", "cow.obj"))
    assert m.verts[0].shape == (2930, 3) and m.faces[0].shape == (5856, 3)
    assert m.verts_uvs[0].shape == (3225, 2) and m.faces_uvs[0].shape == (5856, 3)
    assert m.texture[0].shape == (1024, 1024, 3)
    assert 0.0 <= m.texture[0].min() and m.texture[0].max() <= 1.0 and m.texture[0].std() > 0.05
    # Spot's UVs are kept as written: they reach -0.052 and 1.0007, so texture samplers must clamp or wrap.
    assert -0.06 < m.verts_uvs[0].min() < 0 and 1 < m.verts_uvs[0].max() < 1.01
    edges = m.edges_packed.shape[0]
    assert 2930 - edges + 5856 == 2  # watertight genus 0, as SOURCES.md states


def test_cow_round_trip(tmp_path):
    cow = load_obj(shared_data("meshes", "spot_cow", "cow.obj"))
    save_obj(tmp_path / "cow.obj", cow)
    r = load_obj(tmp_path / "cow.obj")
    assert torch.equal(r.verts[0], cow.verts[0]) and torch.equal(r.faces_uvs[0], cow.faces_uvs[0])
    assert torch.allclose(r.texture[0], cow.texture[0], atol=1e-6)


def test_load_teapot_bunny_and_avocado():
    teapot = load_mesh(shared_data("meshes", "teapot.obj"))
    assert teapot.verts[0].shape == (1292, 3) and teapot.faces[0].shape == (2464, 3)
    assert teapot.verts_uvs is None
    bunny = load_mesh(shared_data("meshes", "bunny_lowres.obj"))
    assert bunny.verts[0].shape == (453, 3) and bunny.faces[0].shape == (902, 3)
    avocado = load_mesh(shared_data("meshes", "avocado", "avocado.obj"))
    assert avocado.faces[0].shape == (682, 3) and avocado.texture[0].shape == (2048, 2048, 3)


@pytest.mark.slow
def test_load_armadillo():
    # its load time is printed by benchmarks/render.py (a timed assertion here failed on a loaded machine)
    m = load_mesh(shared_data("meshes", "armadillo.obj"))
    assert m.verts[0].shape == (49990, 3) and m.faces[0].shape == (99976, 3)
    unit = normalize_to_unit_cube(m.verts[0])
    assert (unit.max(0).values - unit.min(0).values).max().item() == pytest.approx(1.0)
