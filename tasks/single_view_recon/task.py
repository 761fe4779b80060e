"""Single-view 3D reconstruction by deforming a template sphere through a differentiable mesh renderer.

What both modes share: the template, the views, the mesh metrics, the turntable and the saved files. The
modes, chosen with ``mode=fit|learn`` (configs/mode/), live in their own modules:

* :class:`~tasks.single_view_recon.fit.FitRecon` (fit.py) optimises per-vertex offsets of an icosphere plus a
  global per-axis scale and a translation (and optionally vertex colours) so that its soft silhouette and
  colour match the given view(s), with Laplacian, edge-length and flatten / normal-consistency priors (Kato
  et al., "Neural 3D Mesh Renderer", CVPR 2018; Liu et al., "Soft Rasterizer", ICCV 2019; PyTorch3D's deform
  and fit-textured-mesh tutorials).
* :class:`~tasks.single_view_recon.learn.LearnRecon` (learn.py) trains an image encoder that predicts the same
  deformation from one image, with the silhouettes of two random views per object as supervision (the SoftRas
  recipe: IoU + Laplacian + flatten), and evaluates single-view on the test split against the IoU of the mean
  training shape.

Metrics: ``iou_3d`` (voxels at 32^3 as NMR / SoftRas count them, the main metric), ``iou_3d_parity`` (only
the voxels whose centres lie inside), ``chamfer``, ``fscore`` (at 0.01),
``silhouette_iou`` at the input view(s) and ``silhouette_iou_heldout`` at the other views.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import imageio.v3 as iio
import torch
from torch import Tensor

from runner.errors import ConfigError
from runner.geometry.mesh_io import save_obj
from runner.geometry.meshes import Meshes
from runner.geometry.primitives import icosphere
from runner.logging import enlarge, readable_scale, readable_size
from runner.losses import mesh_priors
from runner.render.base import MESHES, Renderer
from runner.task import Task
from runner.visuals import Panel, grey, outline, panel_row, to_uint8, write_video
from tasks.single_view_recon import metrics
from tasks.single_view_recon.data import (
    ViewConfig,
    render_views,
)
from tasks.single_view_recon.models import smoothing_operator

PRIORS = ("laplacian", "edge", "flatten", "normal")
TURNTABLE_VIEWS = 24
TURNTABLE_FPS = 12.5


def prior_terms(mesh: Meshes, weights: dict[str, float], laplacian: str) -> dict[str, Tensor]:
    """Weighted mesh priors of a batch of deformed templates (terms with weight 0 are left out)."""
    fns = {
        "laplacian": lambda: mesh_priors.laplacian_smoothing(mesh, method=laplacian),
        "edge": lambda: mesh_priors.edge_length(mesh),
        "flatten": lambda: mesh_priors.flatten(mesh),
        "normal": lambda: mesh_priors.normal_consistency(mesh),
    }
    return {k: weights[k] * fns[k]() for k in PRIORS if weights[k] > 0}


def with_sigma(renderer: Renderer, sigma: float, key: str) -> Renderer:
    """A shallow copy of a soft renderer with another ``sigma`` [NDC^2] (``key`` names it in errors)."""
    if not hasattr(renderer, "sigma") or not isinstance(sigma, (int, float)) or not 0 < sigma < math.inf:
        raise ConfigError(f"task.{key} needs a renderer with a sigma (soft_mesh) and a finite value > 0, "
                          f"got {type(renderer).__name__} and {sigma}")
    sharp = copy.copy(renderer)
    sharp.sigma = float(sigma)
    return sharp


def labelled_row(columns: dict[str, Tensor]) -> Tensor:
    """Caption -> (B, H, W, 3) RGB or (B, H, W) grey images, side by side under their captions and enlarged to
    >= 256 px (:func:`runner.visuals.panel_row`) -> (B, H', W', 3)."""
    return panel_row([Panel(label, grey(im) if im.dim() == 3 else im) for label, im in columns.items()])


class ReconTask(Task):
    """What both modes share: the template, the renderers and the evaluation of one mesh."""

    metric = "iou_3d"
    mode = "max"
    renders = MESHES

    def __init__(self, renderer: Renderer, gt_renderer: Renderer, views: dict, template_level: int,
                 template_radius: float, smoothing: float, laplacian: str, num_points: int, seed: int):
        super().__init__(seed)
        if laplacian not in ("uniform", "cotangent"):
            raise ConfigError(f"task.laplacian must be uniform or cotangent, got {laplacian!r}")
        if template_radius <= 0:
            raise ConfigError(f"task.template_radius must be > 0, got {template_radius}")
        self.renderer, self.gt_renderer = renderer, gt_renderer
        try:
            self.view_config = ViewConfig(**views)
        except TypeError as e:
            raise ConfigError(f"task.views: {e}") from None
        try:
            sphere = icosphere(template_level)
        except ValueError as e:
            raise ConfigError(f"task.template_level: {e}") from None
        if smoothing < 0:
            raise ConfigError(f"task.smoothing must be >= 0, got {smoothing}")
        self.template_verts = sphere.verts[0] * template_radius
        self.template_faces = sphere.faces[0]
        self.smooth = smoothing_operator(self.template_verts.shape[0], self.template_faces, smoothing)
        self.laplacian = laplacian
        self.num_points = num_points

    def setup(self, device: torch.device) -> None:
        super().setup(device)
        self.template_verts = self.template_verts.to(device)
        self.template_faces = self.template_faces.to(device)
        self.smooth = self.smooth.to(device)
        self.templates: dict[int, Meshes] = {}

    def meshes(self, verts: Tensor, colors: Tensor | None = None) -> Meshes:
        """(B, V, 3) vertices (and (B, V, 3) colours) -> a batch of B deformed templates.

        The topology caches (packed faces, edges, face adjacency of the priors) are built once per B.
        """
        B = verts.shape[0]
        if B not in self.templates:
            template = Meshes([self.template_verts] * B, [self.template_faces] * B)
            mesh_priors.edge_faces(template)
            template.edges_packed  # noqa: B018 (fills the cache)
            self.templates[B] = template
        mesh = self.templates[B].with_verts(list(verts))
        return mesh if colors is None else mesh.with_colors(list(colors))

    def mesh_metrics(self, pred: Meshes, gt: Meshes, gt_voxels: Tensor) -> dict[str, float]:
        return {**metrics.iou_3d(pred, gt_voxels),
                **metrics.surface_metrics(pred, gt, self.num_points, self.seed)}

    def turntable(self, mesh: Meshes) -> Tensor:
        """(T, H, W, 3) frames of ``mesh`` seen from an orbit at the views' elevation and distance."""
        v = self.view_config
        elevation = v.elevation if isinstance(v.elevation, (int, float)) else 30.0
        config = ViewConfig(v.image_size, v.fov, v.distance, elevation, TURNTABLE_VIEWS)
        rgb, _ = render_views(self.gt_renderer, mesh.to(self.device), config.cameras().to(self.device))
        return rgb.clamp(0, 1).cpu()

    def save_mesh(self, mesh: Meshes, out_dir: Path, name: str) -> None:
        """``name``.obj (with vertex colours) and ``name``_turntable.gif and .mp4, enlarged with nearest-neighbour
        to >= 256 px to be looked at (rendering the orbit at 256 px took 30 s of a 7 s tiny fit)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        save_obj(out_dir / f"{name}.obj", mesh.to("cpu"))
        write_video(out_dir / f"{name}_turntable", readable_size(self.turntable(mesh)), TURNTABLE_FPS)

    def save_input_overlay(self, images: Tensor, alpha: Tensor, views: list[int], out_dir: Path) -> None:
        """``input_overlay.png``: the input view(s) enlarged to >= 256 px (nearest-neighbour), with the outline of
        the reconstruction's silhouette in red, side by side under captions.

        Args:
            images: (B, H, W, 3) input views in [0, 1].
            alpha: (B, H, W) the reconstruction's silhouettes from the same cameras.
            views: the B views' indices, for the captions.
        """
        scale = readable_scale(*images.shape[1:3])
        overlays = outline(enlarge(images.cpu(), scale), enlarge(alpha.cpu()[..., None], scale)[..., 0])
        row = panel_row([Panel(f"view {v}, red: reconstruction", overlay[None]) for v, overlay in zip(views, overlays)])
        iio.imwrite(out_dir / "input_overlay.png", to_uint8(row[0]))
