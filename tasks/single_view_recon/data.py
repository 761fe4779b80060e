"""Data of single-view reconstruction: target views with cameras, from embedded shapes or the user's files.

Three sources give the same record, :class:`Views`:

* embedded (``data`` null): a procedural object (:mod:`tasks.single_view_recon.shapes`) rendered by the ground-truth
  renderer (``soft_mesh`` in hard mode with supersampling, finer than the soft renderer being optimised)
  from orbit cameras, 24 views at elevation 30 deg and distance 2.732 at 64 x 64 by default, the setting
  of NMR (Kato et al., CVPR 2018) and SoftRas (Liu et al., ICCV 2019); cached with :mod:`runner.cache`;
* ``data=mesh`` (:class:`MeshFile`): a mesh file (OBJ/PLY), normalised to the unit cube like the embedded shapes
  and rendered the same way;
* ``data=photo`` (:class:`Photos`): the user's images (PNG/JPG) with masks (separate files or the alpha
  channel) and cameras.

:func:`category_dataset` renders whole train/val/test splits of a category for the learned mode.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
import yaml
from torch import Tensor

from runner.cache import cached
from runner.errors import ConfigError, InputError
from runner.geometry import mesh_io
from runner.geometry.cameras import PinholeCamera
from runner.geometry.meshes import Meshes
from runner.render.base import Renderer
from tasks.single_view_recon.metrics import voxels
from tasks.single_view_recon.shapes import CATEGORIES, join_parts, make_parts

DATA_VERSION = 2  # bump when the generated data change
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViewConfig:
    """Orbit cameras around the origin, +y up.

    Attributes:
        image_size: height = width in pixels.
        fov: vertical field of view [deg] (NMR/SoftRas: 30, a 15 deg half angle).
        distance: camera distance from the origin [scene units].
        elevation: one elevation for every view, or one per view [deg].
        azimuth: an int n for n views evenly spaced from 0 deg, or one azimuth per view [deg].
    """

    image_size: int = 64
    fov: float = 30.0
    distance: float = 2.732
    elevation: float | list[float] = 30.0
    azimuth: int | list[float] = 24

    def cameras(self) -> PinholeCamera:
        if isinstance(self.azimuth, int):
            azimuth = torch.arange(self.azimuth, dtype=torch.float32) * (360.0 / self.azimuth)
        else:
            azimuth = torch.tensor(self.azimuth, dtype=torch.float32)
        elevation = torch.as_tensor(self.elevation, dtype=torch.float32)
        if elevation.dim() == 1 and elevation.shape != azimuth.shape:
            raise ConfigError(f"views.elevation has {elevation.numel()} values but views.azimuth {azimuth.numel()}")
        elevation = elevation.expand_as(azimuth)
        size = (self.image_size, self.image_size)
        K = PinholeCamera.intrinsics_from_fov(self.fov, size, batch=len(azimuth))
        return PinholeCamera(K, PinholeCamera.orbit(elevation, azimuth, self.distance), size)


@dataclass(frozen=True)
class Views:
    """Target views of one object.

    Attributes:
        rgb: (N, H, W, 3) linear RGB in [0, 1] over a black background.
        mask: (N, H, W) silhouettes in [0, 1].
        cameras: N cameras.
        fit: indices of the views the reconstruction may see.
        heldout: indices of the other views (for ``silhouette_iou_heldout``); may be empty.
        mesh: the ground-truth mesh (one mesh) or None.
        voxels: (2, R, R, R) bool occupancy of the ground truth over the unit cube by each of
            :data:`~tasks.single_view_recon.metrics.IOU_METRICS`, or None.
    """

    rgb: Tensor
    mask: Tensor
    cameras: PinholeCamera
    fit: list[int]
    heldout: list[int]
    mesh: Meshes | None
    voxels: Tensor | None


def renderer_key(renderer: Renderer) -> dict:
    """The class and settings of a renderer, as strings: the part of a data cache key that says how
    the targets were drawn."""
    return {"class": type(renderer).__qualname__, **{k: repr(v) for k, v in sorted(vars(renderer).items())}}


def render_views(renderer: Renderer, mesh: Meshes, cameras: PinholeCamera, chunk: int = 8) -> tuple[Tensor, Tensor]:
    """Render one mesh from every camera, ``chunk`` views at a time, without gradients.

    Returns:
        rgb (N, H, W, 3) and alpha (N, H, W).
    """
    rgbs, alphas = [], []
    with torch.no_grad():
        for start in range(0, cameras.batch_size, chunk):
            cams = cameras[start : start + chunk]
            out = renderer(mesh.extend(cams.batch_size), cams)
            rgbs.append(out.rgb)
            alphas.append(out.alpha)
    return torch.cat(rgbs), torch.cat(alphas)


def split_views(n: int, fit: list[int]) -> tuple[list[int], list[int]]:
    """Check the fit indices against ``n`` views and return (fit, held-out)."""
    bad = [i for i in fit if not 0 <= i < n]
    if not fit or bad:
        raise ConfigError(f"views.fit must list view indices in [0, {n - 1}], got {fit}")
    return sorted(set(fit)), [i for i in range(n) if i not in fit]


def _pack_mesh(mesh: Meshes) -> dict:
    colors = mesh.verts_colors[0] if mesh.verts_colors is not None else torch.full_like(mesh.verts[0], 0.7)
    return {"verts": mesh.verts[0], "faces": mesh.faces[0], "colors": colors}


def _unpack_mesh(data: dict) -> Meshes:
    return Meshes([data["verts"]], [data["faces"]], verts_colors=[data["colors"]])


def embedded_views(renderer: Renderer, views: ViewConfig, fit: list[int], category: str,
                   seed: int) -> Views:
    """One procedural object of ``category`` drawn from ``seed``, rendered from ``views`` (cached)."""
    if category not in CATEGORIES:
        raise ConfigError(f"task.embedded.category must be one of {', '.join(CATEGORIES)}, got {category!r}")
    cameras = views.cameras()

    def build() -> dict:
        parts = make_parts(category, torch.Generator().manual_seed(seed))
        mesh = join_parts(parts)
        rgb, alpha = render_views(renderer, mesh, cameras)
        return {**_pack_mesh(mesh), "rgb": rgb, "alpha": alpha, "voxels": voxels(parts)}

    key = {"version": DATA_VERSION, "category": category, "seed": seed, "views": views.__dict__,
           "renderer": renderer_key(renderer)}
    data = cached("single_view_recon/object", key, build)
    fit, heldout = split_views(cameras.batch_size, fit)
    return Views(data["rgb"], data["alpha"], cameras, fit, heldout, _unpack_mesh(data), data["voxels"])


def load_mesh(path: str | Path, what: str = "data.path") -> Meshes:
    """An OBJ or PLY file normalised to the unit cube; :class:`InputError` naming the key ``what`` that gave the
    file if it cannot be read."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{what}: no such file {path}")
    if path.suffix.lower() not in (".obj", ".ply"):
        raise InputError(f"{what}: {path.name} is not an OBJ or PLY file")
    try:
        mesh = mesh_io.load_mesh(path)
    except Exception as e:
        reason = str(e).strip().splitlines()[0]
        where = "" if reason.startswith(str(path)) else f"{path}: "  # mesh_io's errors name the file (and line)
        raise InputError(f"{what}: cannot read {where}{reason}") from e
    if mesh.faces[0].shape[0] == 0:
        raise InputError(f"{what}: {path} has no faces")
    mesh = _surface_faces(mesh, path, what)
    return mesh.with_verts([mesh_io.normalize_to_unit_cube(mesh.verts[0])])


def _surface_faces(mesh: Meshes, path: Path, what: str) -> Meshes:
    """``mesh`` without its zero-area faces (coincident or collinear corners); InputError if none is left.

    A loaded mesh is a target (rendered, sampled for chamfer / F-score, voxelised), never deformed: a face
    without area adds nothing to any of these, so dropping it changes no target, while a mesh without a face
    of non-zero area (all vertices coincident, or on one line) has no surface to fit. Zero area means below
    1e-12 of the squared bounding-box extent.
    """
    v, f = mesh.verts[0].double(), mesh.faces[0]
    a, b, c = v[f].unbind(1)
    area = 0.5 * torch.linalg.cross(b - a, c - a).norm(dim=-1)  # (F,)
    extent = (v.max(0).values - v.min(0).values).max()
    keep = area > 1e-12 * extent**2
    if not keep.any():
        raise InputError(f"{what}: every face of {path} has zero area (coincident or collinear vertices): "
                         "there is no surface to fit; give a mesh with a surface")
    if keep.all():
        return mesh
    log.warning("%s: dropped %d of %d faces of %s with zero area (coincident or collinear vertices); "
                "they have no surface to render or sample", what, int((~keep).sum()), len(keep), path)
    faces_uvs = None if mesh.faces_uvs is None else [mesh.faces_uvs[0][keep]]
    return Meshes([mesh.verts[0]], [f[keep]], mesh.verts_colors, mesh.verts_uvs, faces_uvs, mesh.texture)


def mesh_views(renderer: Renderer, views: ViewConfig, fit: list[int], path: str) -> Views:
    """The mesh file at ``path``, normalised to the unit cube, rendered from ``views`` (cached by content)."""
    mesh = load_mesh(path)
    cameras = views.cameras()

    def build() -> dict:
        rgb, alpha = render_views(renderer, mesh, cameras)
        return {"rgb": rgb, "alpha": alpha, "voxels": voxels(mesh)}

    stat = Path(path).expanduser().stat()
    key = {"version": DATA_VERSION, "path": str(Path(path).expanduser().resolve()), "mtime": stat.st_mtime_ns,
           "size": stat.st_size, "views": views.__dict__, "renderer": renderer_key(renderer)}
    data = cached("single_view_recon/mesh", key, build)
    fit, heldout = split_views(cameras.batch_size, fit)
    return Views(data["rgb"], data["alpha"], cameras, fit, heldout, mesh, data["voxels"])


def read_image(path: str | Path, what: str) -> np.ndarray:
    """(H, W[, C]) float32 pixels in [0, 1] of an image file; InputError naming the key ``what`` that gave it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{what}: no such file {path}")
    try:
        image = iio.imread(path)
    except Exception as e:
        raise InputError(f"{what}: cannot read {path} as an image: {e}") from e
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    return image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)


def load_image(image: str, mask: str | None) -> tuple[Tensor, Tensor]:
    """An RGB image and its silhouette, from a separate mask file or the image's alpha channel.

    Returns:
        rgb (H, W, 3) in [0, 1] with the background set to black, and mask (H, W) in [0, 1].
    """
    pixels = read_image(image, "data.image")
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, -1)
    rgb = torch.from_numpy(pixels[..., :3].copy())
    if mask is not None:
        m = read_image(mask, "data.mask")
        m = m[..., 0] if m.ndim == 3 else m
        if m.shape != tuple(rgb.shape[:2]):
            raise InputError(f"data.mask {mask} is {m.shape[1]}x{m.shape[0]} but data.image {image} is "
                             f"{rgb.shape[1]}x{rgb.shape[0]}; give a mask of the image's size")
        alpha = torch.from_numpy(m.copy())
    elif pixels.shape[-1] == 4:
        alpha = torch.from_numpy(pixels[..., 3].copy())
    else:
        raise InputError(f"data.image {image} has no alpha channel; give data.mask=<mask file>")
    if alpha.max() < 0.5:
        raise InputError(f"the mask of {image} is empty (no pixel >= 0.5); the object must be white in the mask")
    return rgb * alpha[..., None], alpha


def load_cameras(path: str | Path, n: int, image_size: tuple[int, int], fov: float) -> PinholeCamera:
    """Cameras from a YAML/JSON file: one entry, or a list with one entry per image.

    Each entry is either ``{K: 3x3, cam_from_world: 4x4}`` (pixels; world -> OpenCV camera) or
    ``{elevation, azimuth, distance[, fov]}`` [deg, deg, scene units, deg] of an orbit camera (+y up).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"data.camera: no such file {path}")
    try:
        entries = json.loads(path.read_text()) if path.suffix.lower() == ".json" else yaml.safe_load(path.read_text())
    except Exception as e:
        raise InputError(f"data.camera: cannot parse {path}: {e}") from e
    entries = entries if isinstance(entries, list) else [entries]
    if len(entries) != n:
        raise InputError(f"data.camera: {path} has {len(entries)} camera(s) for {n} image(s)")
    Ks, poses = [], []
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise InputError(f"data.camera: entry {i} of {path} is not a mapping")
        if {"K", "cam_from_world"} <= e.keys():
            K, pose = torch.tensor(e["K"], dtype=torch.float32), torch.tensor(e["cam_from_world"], dtype=torch.float32)
            if K.shape != (3, 3) or pose.shape != (4, 4):
                raise InputError(f"data.camera: entry {i}: K must be 3x3 and cam_from_world 4x4")
        elif {"elevation", "azimuth", "distance"} <= e.keys():
            K = PinholeCamera.intrinsics_from_fov(float(e.get("fov", fov)), image_size)[0]
            pose = PinholeCamera.orbit(torch.tensor([float(e["elevation"])]), torch.tensor([float(e["azimuth"])]),
                                       float(e["distance"]))[0]
        else:
            raise InputError(f"data.camera: entry {i} of {path} needs K and cam_from_world, or elevation, "
                             "azimuth and distance")
        Ks.append(K)
        poses.append(pose)
    return PinholeCamera(torch.stack(Ks), torch.stack(poses), image_size)


def image_views(images: list[str], masks: list[str] | None, camera: str | None, views: ViewConfig,
                gt_mesh: str | None) -> Views:
    """The user's images (all used for fitting) with their cameras and an optional ground-truth mesh.

    Without a camera file the images are taken to be the first ``len(images)`` cameras of ``views``.
    """
    if masks is not None and len(masks) != len(images):
        raise InputError(f"data.mask lists {len(masks)} file(s) for {len(images)} image(s)")
    loaded = [load_image(img, None if masks is None else masks[i]) for i, img in enumerate(images)]
    sizes = {tuple(rgb.shape[:2]) for rgb, _ in loaded}
    if len(sizes) != 1:
        raise InputError(f"data.image: all images must have one size, got {sorted(sizes)}")
    size = sizes.pop()
    if camera is not None:
        cameras = load_cameras(camera, len(images), size, views.fov)
    else:
        cameras = views.cameras()[: len(images)]
        if cameras.batch_size < len(images) or cameras.image_size != size:
            raise InputError(f"data.image is {size[1]}x{size[0]} but views.image_size={views.image_size}: "
                             "give data.camera=<file> or set views.image_size")
    rgb = torch.stack([r for r, _ in loaded])
    mask = torch.stack([m for _, m in loaded])
    mesh = load_mesh(gt_mesh, "data.gt_mesh") if gt_mesh is not None else None
    return Views(rgb, mask, cameras, list(range(len(images))), [], mesh, None if mesh is None else voxels(mesh))


class MeshFile:
    """``data=mesh``: the user's mesh file (OBJ/PLY), normalised to the unit cube and rendered from
    ``task.views``; the file is also the ground truth of the 3D metrics.

    Args:
        path: the OBJ or PLY file.
    """

    has_shape = True  # a ground-truth surface for chamfer, F-score and 3D IoU

    def __init__(self, path: str | None):
        if not path:
            raise ConfigError("data=mesh needs data.path=<OBJ or PLY file>")
        self.path = str(path)

    def views(self, renderer: Renderer, views: ViewConfig, fit: list[int]) -> Views:
        """The mesh rendered by ``renderer`` from ``views``; ``fit`` indexes the fitted views, the rest are held out."""
        return mesh_views(renderer, views, fit, self.path)


class Photos:
    """``data=photo``: the user's image(s) of one object, every one fitted, with silhouettes and cameras.

    Args:
        image: PNG/JPG file, or a list of them (one per view, all of one size).
        mask: mask file(s) (white = object) in the same order; None = each image's alpha channel.
        camera: YAML/JSON camera file (:func:`load_cameras`); None = the first cameras of ``task.views``.
        gt_mesh: optional OBJ/PLY of the object, for the 3D metrics (else the main metric is the silhouette IoU).
    """

    def __init__(self, image: str | list[str] | None, mask: str | list[str] | None = None, camera: str | None = None,
                 gt_mesh: str | None = None):
        if not image:
            raise ConfigError("data=photo needs data.image=<PNG/JPG file> (or a list of files)")
        self.images = list(image) if isinstance(image, (list, tuple)) else [image]
        self.masks = None if mask is None else list(mask) if isinstance(mask, (list, tuple)) else [mask]
        self.camera, self.gt_mesh = camera, gt_mesh
        self.has_shape = gt_mesh is not None

    def views(self, renderer: Renderer, views: ViewConfig, fit: list[int]) -> Views:
        """The images with their cameras (``renderer`` and ``fit`` are unused: every image is fitted)."""
        return image_views(self.images, self.masks, self.camera, views, self.gt_mesh)


def category_dataset(renderer: Renderer, views: ViewConfig, categories: list[str],
                     sizes: dict[str, int], seed: int) -> dict[str, dict]:
    """Train/val/test splits of procedural objects, each rendered from every view of ``views`` (cached).

    Args:
        sizes: objects per category in each split, e.g. ``{"train": 256, "val": 16, "test": 64}``.
    Returns:
        per split: ``images`` (N, V, H, W, 4) uint8 RGBA, ``verts``/``faces`` lists of the N meshes,
        ``voxels`` (N, 2, R, R, R) bool occupancies (:func:`~tasks.single_view_recon.metrics.voxels`),
        ``category`` (N,) int64 index into ``categories``.
    """
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown or not categories:
        raise ConfigError(f"task.embedded.categories must be taken from {', '.join(CATEGORIES)}, got {categories}")
    cameras = views.cameras()
    out = {}
    for split_index, (split, n) in enumerate(sizes.items()):

        def build(split_index=split_index, n=n) -> dict:
            images, verts, faces, grids, labels = [], [], [], [], []
            for c, category in enumerate(categories):
                g = torch.Generator().manual_seed(seed * 1000 + split_index * 100 + CATEGORIES.index(category))
                for _ in range(n):
                    parts = make_parts(category, g)
                    mesh = join_parts(parts)
                    rgb, alpha = render_views(renderer, mesh, cameras)
                    rgba = torch.cat([rgb, alpha[..., None]], -1)
                    images.append((rgba.clamp(0, 1) * 255).round().to(torch.uint8))
                    verts.append(mesh.verts[0])
                    faces.append(mesh.faces[0])
                    grids.append(voxels(parts))
                    labels.append(c)
            return {"images": torch.stack(images), "verts": verts, "faces": faces, "voxels": torch.stack(grids),
                    "category": torch.tensor(labels)}

        key = {"version": DATA_VERSION, "categories": list(categories), "split": split, "n": n, "seed": seed,
               "views": views.__dict__, "renderer": renderer_key(renderer)}
        out[split] = cached("single_view_recon/category", key, build)
    return out
