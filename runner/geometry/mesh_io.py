"""Reading and writing triangle meshes: Wavefront OBJ (+ MTL and a diffuse texture) and PLY.

Parsing is vectorised with numpy over all the lines of one kind at once, so a 100k-triangle OBJ loads
in a fraction of a second. Polygons are fan-triangulated (``(0, i, i + 1)``), so convex polygons keep
their orientation. Vertex normals are ignored (dwx recomputes them from the faces).

Colour conventions: vertex colours are read and written as floats in [0, 1] (OBJ ``v x y z r g b``) or
8-bit (PLY ``uchar red green blue``); texture images are the 8-bit values divided by 255, with no
sRGB decoding, as PyTorch3D and Kaolin load them. Texture coordinates keep OBJ's origin at the
bottom-left of the image (v up). Every file is written to a temporary name and then renamed, so an
interrupted save never leaves a half-written mesh.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import chain
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor

from runner.geometry.meshes import Meshes

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_PLY_ENDIAN = {"binary_little_endian": "<", "binary_big_endian": ">"}


# ====================================================================== dispatch and normalisation
def load_mesh(path: str | os.PathLike, device=None, dtype: torch.dtype = torch.float32) -> Meshes:
    """Load an ``.obj`` (with its texture, when it has one) or a ``.ply`` file as a single-mesh batch."""
    path = _existing_file(path)
    suffix = path.suffix.lower()
    if suffix == ".obj":
        return load_obj(path, device=device, dtype=dtype)
    if suffix == ".ply":
        return load_ply(path, device=device, dtype=dtype)
    raise ValueError(f"unsupported mesh format {suffix!r} for {path}; supported: .obj, .ply")


def normalize_to_unit_cube(verts: Tensor) -> Tensor:
    """Centre the bounding box at the origin and scale its longest side to 1 (the NMR/SoftRas ShapeNet frame).

    Args:
        verts: (..., V, 3) vertices [any unit]; each leading index is normalised on its own.
    Returns:
        (..., V, 3) vertices inside [-0.5, 0.5]^3, differentiable w.r.t. ``verts``.
    """
    if verts.dim() < 2 or verts.shape[-1] != 3 or verts.shape[-2] == 0:
        raise ValueError(f"verts must be (..., V, 3) with V > 0, got {tuple(verts.shape)}")
    lo, hi = verts.min(-2, keepdim=True).values, verts.max(-2, keepdim=True).values
    extent = (hi - lo).max(-1, keepdim=True).values
    if (extent <= 0).any():
        raise ValueError("cannot normalise a mesh whose vertices all coincide (zero bounding box)")
    return (verts - 0.5 * (lo + hi)) / extent


# ====================================================================== OBJ
def load_obj(path: str | os.PathLike, device=None, dtype: torch.dtype = torch.float32,
             load_textures: bool = True) -> Meshes:
    """Load a Wavefront OBJ as a single-mesh :class:`Meshes`.

    Reads ``v`` (``x y z`` or ``x y z r g b``), ``vt`` and ``f`` in the forms ``v``, ``v/vt``, ``v//vn`` and
    ``v/vt/vn`` (1-based or negative relative indices); all objects and groups become one mesh.

    Args:
        path: the ``.obj`` file.
        load_textures: read ``vt``, ``mtllib`` and the ``map_Kd`` image of the material the faces use.
            False loads geometry and vertex colours only (for files whose textures are missing).
    Returns:
        Meshes with verts (V, 3), faces (F, 3); ``verts_colors`` (V, 3) when every ``v`` line has a colour;
        ``verts_uvs`` (T, 2) and ``faces_uvs`` (F, 3) when every face has texture coordinates; ``texture``
        (Ht, Wt, 3) in [0, 1] when their material has a ``map_Kd``.
    Raises:
        FileNotFoundError: the OBJ, its MTL or its texture image is missing.
        ValueError: malformed or non-finite (NaN, Inf) numbers, an index out of range, mixed face formats, no faces.
    """
    path = _existing_file(path)
    v_rows, vt_rows, f_rows = [], [], []
    f_line, f_nv, f_nvt, f_mtl = [], [], [], []  # per face row: line number, v/vt defined before, material
    mtllibs, material = [], None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line_no, line in enumerate(fh, 1):
            parts = line.split(None, 1)
            if not parts:
                continue
            key, rest = parts[0], (parts[1] if len(parts) > 1 else "")
            if key == "v":
                v_rows.append(rest)
            elif key == "f":
                f_rows.append(rest)
                f_line.append(line_no)
                f_nv.append(len(v_rows))
                f_nvt.append(len(vt_rows))
                f_mtl.append(material)
            elif key == "vt":
                vt_rows.append(rest)
            elif key == "mtllib":
                mtllibs.append(rest.strip())
            elif key == "usemtl":
                material = rest.strip()
    if not f_rows:
        raise ValueError(f"{path}: no faces ('f' lines); dwx needs a triangle mesh, not a point cloud")
    v = _parse_table(v_rows, (3, 4, 6), "v", path)
    _check_finite(v, "vertex", path)
    verts, colors = v[:, :3], (v[:, 3:6] if v.shape[1] == 6 else None)
    counts, tokens = _split_faces(f_rows)
    f_line = np.asarray(f_line)
    idx = _parse_face_tokens(tokens, counts, f_line, path)
    tri_tokens = _fan(counts)  # (F, 3) indices into tokens
    row_of_token = np.repeat(np.arange(len(counts)), counts)
    faces = _resolve(idx[:, 0], np.asarray(f_nv)[row_of_token], len(verts), "v", f_line[row_of_token], path)

    verts_uvs = faces_uvs = texture = None
    if load_textures and idx.shape[1] > 1 and (idx[:, 1] != 0).any():
        has_vt = idx[:, 1] != 0
        if not has_vt.all():
            bad = f_line[row_of_token[np.argmin(has_vt)]]
            raise ValueError(f"{path}:{bad}: some faces have texture coordinates and others not; "
                             "pass load_textures=False to load the geometry only")
        uv = _parse_table(vt_rows, (2, 3), "vt", path)[:, :2]
        _check_finite(uv, "texture coordinate", path)
        uv_idx = _resolve(idx[:, 1], np.asarray(f_nvt)[row_of_token], len(uv), "vt", f_line[row_of_token], path)
        verts_uvs = [torch.as_tensor(uv, dtype=dtype, device=device)]
        faces_uvs = [torch.as_tensor(uv_idx[tri_tokens], device=device)]
        image = _obj_texture(path, mtllibs, {m for m in f_mtl if m is not None})
        if image is not None:
            texture = [torch.as_tensor(image, dtype=dtype, device=device)]
    return Meshes(
        verts=[torch.as_tensor(verts, dtype=dtype, device=device)],
        faces=[torch.as_tensor(faces[tri_tokens], device=device)],
        verts_colors=None if colors is None else [torch.as_tensor(colors, dtype=dtype, device=device)],
        verts_uvs=verts_uvs, faces_uvs=faces_uvs, texture=texture,
    )


def save_obj(path: str | os.PathLike, mesh: Meshes | tuple[Tensor, Tensor], index: int | None = None) -> None:
    """Write one mesh as OBJ: colours as ``v x y z r g b``; UVs + texture as ``vt``, ``<stem>.mtl``, ``<stem>.png``.

    Args:
        path: the ``.obj`` file to write; the MTL and PNG go beside it when the mesh has a texture.
        mesh: a :class:`Meshes` or a ``(verts (V, 3), faces (F, 3))`` pair.
        index: which mesh of a batch to write; may be omitted for a batch of one.
    """
    path = Path(path)
    verts, faces, colors, uvs, faces_uvs, texture = _select(mesh, index)
    lines = []
    if texture is not None:
        if uvs is None:
            raise ValueError("a mesh with a texture needs verts_uvs and faces_uvs to be saved")
        image = (np.clip(texture, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        _atomic_write(path.with_suffix(".png"), lambda tmp: iio.imwrite(tmp, image, extension=".png"))
        mtl = f"newmtl material_0\nKd 1 1 1\nmap_Kd {path.stem}.png\n"
        _atomic_write(path.with_suffix(".mtl"), lambda tmp: Path(tmp).write_text(mtl))
        lines.append(f"mtllib {path.stem}.mtl\n")
    v = verts if colors is None else np.concatenate([verts, colors], 1)
    digits = 17 if _source_dtype(mesh, index) == torch.float64 else 9  # enough to round-trip exactly
    lines.append(_format_rows("v", v, digits))
    f = faces + 1
    if uvs is not None:
        lines.append(_format_rows("vt", uvs, digits))
        if texture is not None:
            lines.append("usemtl material_0\n")
        f_text = (("f" + " %d/%d" * 3 + "\n") * len(f)) % tuple(np.stack([f, faces_uvs + 1], -1).ravel())
    else:
        f_text = (("f" + " %d" * 3 + "\n") * len(f)) % tuple(f.ravel())
    lines.append(f_text)
    _atomic_write(path, lambda tmp: Path(tmp).write_text("".join(lines)))


def _split_faces(f_rows: list[str]) -> tuple[np.ndarray, list[str]]:
    """Per-row vertex counts (R,) and the flat list of ``v[/vt[/vn]]`` tokens."""
    split = [r.split() for r in f_rows]
    return np.fromiter(map(len, split), dtype=np.int64, count=len(split)), list(chain.from_iterable(split))


def _parse_face_tokens(tokens: list[str], counts: np.ndarray, f_line: np.ndarray, path: Path) -> np.ndarray:
    """(T, k) int64 indices as written (0 where a field is empty), k = 1, 2 or 3 fields per token."""
    if (counts < 3).any():
        bad = f_line[np.argmax(counts < 3)]
        raise ValueError(f"{path}:{bad}: a face needs at least 3 vertices")
    joined = " ".join(tokens).replace("//", "/0/")
    fields = joined.count("/") // len(tokens) + 1
    slashes = (np.zeros(1, np.int64) if fields == 1 and "/" not in joined else
               np.fromiter((t.count("/") for t in tokens), dtype=np.int64, count=len(tokens)))
    if (slashes != slashes[0]).any() or slashes[0] > 2:
        row = np.searchsorted(np.cumsum(counts), np.argmax(slashes != slashes[0]), side="right")
        raise ValueError(f"{path}:{f_line[min(row, len(f_line) - 1)]}: faces mix the forms v, v/vt, v//vn and "
                         "v/vt/vn; re-export the mesh with one form")
    try:
        values = np.array(joined.replace("/", " ").split(), dtype=np.int64)
    except ValueError as err:
        raise ValueError(f"{path}: malformed face index ({err})") from None
    if values.size != len(tokens) * fields:
        raise ValueError(f"{path}: malformed face tokens (an empty index such as '1/2/'?)")
    return values.reshape(len(tokens), fields)


def _resolve(idx: np.ndarray, defined_before: np.ndarray, n: int, kind: str, line: np.ndarray,
             path: Path) -> np.ndarray:
    """1-based or negative (relative) OBJ indices -> 0-based, checked against the ``n`` elements."""
    out = np.where(idx > 0, idx - 1, idx + defined_before)
    bad = (idx == 0) | (out < 0) | (out >= n)
    if bad.any():
        i = np.argmax(bad)
        raise ValueError(f"{path}:{line[i]}: face {kind} index {idx[i]} out of range (file has {n} '{kind}')")
    return out


def _fan(counts: np.ndarray) -> np.ndarray:
    """(F, 3) token indices of the fan triangulation (0, i, i + 1) of polygons with ``counts`` corners."""
    starts = np.cumsum(counts) - counts
    n_tri = counts - 2
    row = np.repeat(np.arange(len(counts)), n_tri)
    k = np.arange(n_tri.sum()) - np.repeat(np.cumsum(n_tri) - n_tri, n_tri)
    base = starts[row]
    return np.stack([base, base + k + 1, base + k + 2], -1)


def _obj_texture(path: Path, mtllibs: list[str], used: set[str]) -> np.ndarray | None:
    """(Ht, Wt, 3) float64 in [0, 1] of the ``map_Kd`` the used materials name, or None if they name none."""
    maps: dict[str, Path] = {}
    for lib in mtllibs:
        mtl_path = path.parent / lib
        if not mtl_path.is_file():
            raise FileNotFoundError(f"{path}: material library {mtl_path} not found; "
                                    "pass load_textures=False to load the geometry only")
        name = None
        for line in mtl_path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "newmtl":
                name = parts[1]
            elif len(parts) >= 2 and parts[0] == "map_Kd" and name is not None:
                # Options such as -s u v come before the file name; Windows exporters write backslashes.
                maps[name] = mtl_path.parent / parts[-1].replace("\\", "/")
    images = sorted({maps[m] for m in used if m in maps})
    if not images:
        return None
    if len(images) > 1:
        raise ValueError(f"{path}: faces use {len(images)} textures ({', '.join(p.name for p in images)}); "
                         "a dwx mesh has one texture, so bake them into one atlas or pass load_textures=False")
    if not images[0].is_file():
        raise FileNotFoundError(f"{path}: texture {images[0]} not found; "
                                "pass load_textures=False to load the geometry only")
    return _image_to_float_rgb(iio.imread(images[0]))


def _image_to_float_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W[, C]) integer or float image -> (H, W, 3) float64 in [0, 1] (grey repeated, alpha dropped)."""
    if image.ndim == 2:
        image = image[..., None]
    image = np.repeat(image, 3, axis=-1) if image.shape[-1] in (1, 2) else image[..., :3]
    if np.issubdtype(image.dtype, np.integer):
        return image.astype(np.float64) / np.iinfo(image.dtype).max
    return image.astype(np.float64)


# ====================================================================== PLY
def load_ply(path: str | os.PathLike, device=None, dtype: torch.dtype = torch.float32) -> Meshes:
    """Load a PLY (``ascii``, ``binary_little_endian`` or ``binary_big_endian``) as a single-mesh :class:`Meshes`.

    Reads the ``vertex`` element (x, y, z and optional red, green, blue: integers are divided by their
    type's maximum) and the ``face`` element's vertex index list (polygons are fan-triangulated).
    Other elements are skipped when they come after these two or have no list properties. A NaN or Inf
    coordinate or colour is a ValueError.
    """
    path = _existing_file(path)
    data = path.read_bytes()
    fmt, elements, body = _ply_header(data, path)
    names = [e[0] for e in elements]
    if "vertex" not in names or "face" not in names:
        raise ValueError(f"{path}: a PLY mesh needs 'vertex' and 'face' elements, found {names}")
    read = _ply_read_ascii if fmt == "ascii" else _ply_read_binary
    tables = read(body, elements, _PLY_ENDIAN.get(fmt, "<"), path)
    vertex = tables["vertex"]
    for axis in ("x", "y", "z"):
        if axis not in vertex:
            raise ValueError(f"{path}: vertex element has no '{axis}' property")
    verts = np.stack([vertex["x"], vertex["y"], vertex["z"]], -1).astype(np.float64)
    _check_finite(verts, "vertex", path)
    colors = None
    if all(c in vertex for c in ("red", "green", "blue")):
        colors = np.stack([_unit_range(vertex[c]) for c in ("red", "green", "blue")], -1)
        _check_finite(colors, "vertex colour", path)
    counts, flat = tables["face"]
    if len(counts) == 0:
        raise ValueError(f"{path}: the PLY has no faces; dwx needs a triangle mesh, not a point cloud")
    if (counts < 3).any():
        raise ValueError(f"{path}: face {np.argmax(counts < 3)} has fewer than 3 vertices")
    faces = flat.astype(np.int64)[_fan(counts)]
    if faces.min() < 0 or faces.max() >= len(verts):
        bad = faces.min() if faces.min() < 0 else faces.max()
        raise ValueError(f"{path}: face vertex index {bad} out of range (file has {len(verts)} vertices)")
    return Meshes(
        verts=[torch.as_tensor(verts, dtype=dtype, device=device)],
        faces=[torch.as_tensor(faces, device=device)],
        verts_colors=None if colors is None else [torch.as_tensor(colors, dtype=dtype, device=device)],
    )


def save_ply(path: str | os.PathLike, mesh: Meshes | tuple[Tensor, Tensor], index: int | None = None,
             binary: bool = True) -> None:
    """Write one mesh as PLY (binary little-endian or ASCII); vertex colours become ``uchar red green blue``.

    Coordinates are written as ``double`` for float64 meshes and ``float`` otherwise. Texture data is not
    written (PLY has no standard for it; use :func:`save_obj`).
    """
    path = Path(path)
    verts, faces, colors, _, _, _ = _select(mesh, index)
    real = "double" if _source_dtype(mesh, index) == torch.float64 else "float"
    fields = [("x", _PLY_TYPES[real]), ("y", _PLY_TYPES[real]), ("z", _PLY_TYPES[real])]
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0", "comment written by dwx",
              f"element vertex {len(verts)}"] + [f"property {real} {a}" for a in "xyz"]
    if colors is not None:
        header += [f"property uchar {c}" for c in ("red", "green", "blue")]
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        colors8 = (np.clip(colors, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    head = ("\n".join(header) + "\n").encode("ascii")
    if binary:
        vrec = np.empty(len(verts), dtype=np.dtype([(n, "<" + t) for n, t in fields]))
        for i, a in enumerate("xyz"):
            vrec[a] = verts[:, i]
        if colors is not None:
            for i, c in enumerate(("red", "green", "blue")):
                vrec[c] = colors8[:, i]
        frec = np.empty(len(faces), dtype=np.dtype([("n", "u1"), ("i", "<i4", (3,))]))
        frec["n"], frec["i"] = 3, faces
        payload = head + vrec.tobytes() + frec.tobytes()
    else:
        fmt = "%.17g" if real == "double" else "%.9g"
        table = verts if colors is None else np.concatenate([verts, colors8], 1)  # %d truncates exact 0..255
        vtext = ((" ".join([fmt] * 3 + ["%d"] * (table.shape[1] - 3)) + "\n") * len(table)) % tuple(table.ravel())
        ftext = ("3 %d %d %d\n" * len(faces)) % tuple(faces.ravel())
        payload = head + (vtext + ftext).encode("ascii")
    _atomic_write(path, lambda tmp: Path(tmp).write_bytes(payload))


def _ply_header(data: bytes, path: Path) -> tuple[str, list, bytes]:
    """(format, [(name, count, [(prop, type) or (prop, 'list', count_type, item_type)])], body bytes)."""
    if not data.startswith(b"ply"):
        raise ValueError(f"{path}: not a PLY file (it does not start with 'ply')")
    end = data.find(b"end_header")
    if end < 0:
        raise ValueError(f"{path}: PLY header has no 'end_header'")
    body_start = data.index(b"\n", end) + 1
    fmt, elements = None, []
    for line in data[:end].decode("ascii", errors="replace").splitlines()[1:]:
        parts = line.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            elements.append((parts[1], int(parts[2]), []))
        elif parts[0] == "property" and elements:
            if parts[1] == "list":
                elements[-1][2].append((parts[4], "list", _ply_type(parts[2], path), _ply_type(parts[3], path)))
            else:
                elements[-1][2].append((parts[2], _ply_type(parts[1], path)))
    if fmt not in ("ascii", *_PLY_ENDIAN):
        raise ValueError(f"{path}: unsupported PLY format {fmt!r}; supported: ascii, binary_little_endian, "
                         "binary_big_endian")
    return fmt, elements, data[body_start:]


def _ply_type(name: str, path: Path) -> str:
    if name not in _PLY_TYPES:
        raise ValueError(f"{path}: unknown PLY property type {name!r}")
    return _PLY_TYPES[name]


def _face_list_property(props: list, path: Path) -> None:
    if len(props) != 1 or props[0][1] != "list" or props[0][0] not in ("vertex_indices", "vertex_index"):
        raise ValueError(f"{path}: unsupported face element {[p[0] for p in props]}; dwx reads faces with "
                         "exactly one list property 'vertex_indices'")


def _ply_read_ascii(body: bytes, elements: list, endian: str, path: Path) -> dict:
    lines = [ln for ln in body.decode("ascii", errors="replace").splitlines() if ln.strip()]
    tables, start = {}, 0
    for name, count, props in elements:
        rows = lines[start:start + count]
        if len(rows) < count:
            raise ValueError(f"{path}: PLY body ends inside element '{name}' ({len(rows)} of {count} rows)")
        start += count
        if name == "vertex":
            if any(p[1] == "list" for p in props):
                raise ValueError(f"{path}: list properties in the vertex element are not supported")
            values = np.array(" ".join(rows).split(), dtype=np.float64)
            if values.size != count * len(props):
                raise ValueError(f"{path}: vertex rows must have {len(props)} values each ({values.size} for {count})")
            values = values.reshape(count, len(props))
            tables["vertex"] = {p[0]: values[:, i].astype(p[1]) for i, p in enumerate(props)}  # declared type
        elif name == "face":
            _face_list_property(props, path)
            counts, tokens = _split_faces(rows)
            values = np.array(tokens, dtype=np.int64)
            starts = np.cumsum(counts) - counts
            n = values[starts]
            if (n != counts - 1).any():
                raise ValueError(f"{path}: face {np.argmax(n != counts - 1)} lists a wrong number of indices")
            keep = np.ones(len(values), dtype=bool)
            keep[starts] = False
            tables["face"] = (n, values[keep])
        if "vertex" in tables and "face" in tables:
            break
    return tables


def _ply_read_binary(body: bytes, elements: list, endian: str, path: Path) -> dict:
    tables, offset = {}, 0
    for name, count, props in elements:
        if name == "face":
            _face_list_property(props, path)
            _, _, count_t, item_t = props[0]
            tables["face"], offset = _ply_binary_lists(body, offset, count, endian + count_t, endian + item_t, path)
        elif any(p[1] == "list" for p in props):
            if "vertex" in tables and "face" in tables:
                break
            raise ValueError(f"{path}: element '{name}' with list properties before the faces is not supported")
        else:
            dt = np.dtype([(p[0], endian + p[1]) for p in props])
            if offset + dt.itemsize * count > len(body):
                raise ValueError(f"{path}: PLY body ends inside element '{name}'")
            table = np.frombuffer(body, dtype=dt, count=count, offset=offset)
            offset += dt.itemsize * count
            if name == "vertex":
                tables["vertex"] = {p[0]: table[p[0]] for p in props}
        if "vertex" in tables and "face" in tables:
            break
    return tables


def _ply_binary_lists(body: bytes, offset: int, count: int, count_t: str, item_t: str,
                      path: Path) -> tuple[tuple[np.ndarray, np.ndarray], int]:
    """Read ``count`` binary index lists: fast when all have the first list's length, else one by one."""
    if count == 0:
        return (np.zeros(0, np.int64), np.zeros(0, np.int64)), offset
    c_size, i_size = np.dtype(count_t).itemsize, np.dtype(item_t).itemsize
    if offset + c_size > len(body):
        raise ValueError(f"{path}: PLY body ends before the faces")
    k = int(np.frombuffer(body, count_t, 1, offset)[0])
    uniform = np.dtype([("n", count_t), ("i", item_t, (k,))])
    if offset + uniform.itemsize * count <= len(body):
        rec = np.frombuffer(body, uniform, count, offset)
        if (rec["n"] == k).all():
            return (np.full(count, k, np.int64), rec["i"].reshape(-1)), offset + uniform.itemsize * count
    counts, chunks = np.empty(count, np.int64), []
    for j in range(count):
        if offset + c_size > len(body):
            raise ValueError(f"{path}: PLY body ends inside the faces (face {j} of {count})")
        n = int(np.frombuffer(body, count_t, 1, offset)[0])
        offset += c_size
        if offset + n * i_size > len(body):
            raise ValueError(f"{path}: PLY body ends inside the faces (face {j} of {count})")
        chunks.append(np.frombuffer(body, item_t, n, offset))
        counts[j] = n
        offset += n * i_size
    return (counts, np.concatenate(chunks)), offset


def _unit_range(values: np.ndarray) -> np.ndarray:
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.float64) / np.iinfo(values.dtype).max
    return values.astype(np.float64)


# ====================================================================== shared helpers
def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mesh file not found: {path}")
    return path


def _parse_table(rows: list[str], widths: Sequence[int], kind: str, path: Path) -> np.ndarray:
    """(N, w) float64 from ``N`` whitespace-separated rows that all have the same width ``w`` in ``widths``."""
    if not rows:
        raise ValueError(f"{path}: faces refer to '{kind}' lines but the file has none")
    try:
        values = np.array(" ".join(rows).split(), dtype=np.float64)
    except ValueError as err:
        raise ValueError(f"{path}: malformed '{kind}' line ({err})") from None
    lengths = {len(r.split()) for r in rows}
    width = len(values) // len(rows)
    if len(lengths) != 1 or width not in widths:
        raise ValueError(f"{path}: '{kind}' lines must all have one of {tuple(widths)} numbers, "
                         f"found {sorted(lengths)}")
    return values.reshape(len(rows), width)


def _check_finite(values: np.ndarray, kind: str, path: Path) -> None:
    """Raise ValueError naming the first row of ``values`` (N, k) that holds a NaN or Inf (1-based, as OBJ counts)."""
    bad = ~np.isfinite(values).all(1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{path}: {kind} {i + 1} is not finite ({' '.join(f'{x:g}' for x in values[i])}): "
                         "fix or remove it (NaN and Inf cannot be rendered or fitted)")


def _select(mesh: Meshes | tuple[Tensor, Tensor], index: int | None):
    """numpy (verts, faces, colors, uvs, faces_uvs, texture) of one mesh, None for what it lacks."""
    def np_(x):
        return None if x is None else x.detach().cpu().numpy()

    if isinstance(mesh, Meshes):
        if index is None and len(mesh) != 1:
            raise ValueError(f"the batch holds {len(mesh)} meshes; pass index=b to choose the one to save")
        b = 0 if index is None else index
        if not 0 <= b < len(mesh):
            raise ValueError(f"index {b} out of range for a batch of {len(mesh)} meshes")

        def pick(xs):
            return None if xs is None else np_(xs[b])

        verts, faces = np_(mesh.verts[b]), np_(mesh.faces[b])
        extras = (pick(mesh.verts_colors), pick(mesh.verts_uvs), pick(mesh.faces_uvs), pick(mesh.texture))
        if (extras[1] is None) != (extras[2] is None):
            raise ValueError("verts_uvs and faces_uvs must be given together")
    elif isinstance(mesh, tuple) and len(mesh) == 2:
        verts, faces = np_(mesh[0]), np_(mesh[1])
        extras = (None, None, None, None)
    else:
        raise ValueError(f"expected Meshes or a (verts, faces) pair, got {type(mesh).__name__}")
    if verts.ndim != 2 or verts.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"expected verts (V, 3) and faces (F, 3), got {verts.shape} and {faces.shape}")
    if len(faces) == 0:
        raise ValueError("cannot save a mesh with zero faces")
    if faces.min() < 0 or faces.max() >= len(verts):
        raise ValueError(f"face index out of range [0, {len(verts)}): min {faces.min()}, max {faces.max()}")
    return (verts.astype(np.float64), faces.astype(np.int64), *extras)


def _source_dtype(mesh: Meshes | tuple[Tensor, Tensor], index: int | None) -> torch.dtype:
    return mesh.verts[index or 0].dtype if isinstance(mesh, Meshes) else mesh[0].dtype


def _format_rows(key: str, values: np.ndarray, digits: int) -> str:
    """``key a b c`` lines with ``digits`` significant digits (9 round-trip float32 exactly, 17 float64)."""
    row = key + f" %.{digits}g" * values.shape[1] + "\n"
    return (row * len(values)) % tuple(values.ravel())


def _atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` and rename the result onto ``path`` (no half-written file on failure)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
