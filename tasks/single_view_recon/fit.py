"""single_view_recon ``mode=fit``: deform the template to match the silhouettes and colours of given view(s)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from runner.errors import ConfigError
from runner.geometry.meshes import Meshes
from runner.logging import Logger
from runner.losses.silhouette import soft_iou
from runner.losses.weights import loss_weights
from runner.render.base import Renderer
from tasks.single_view_recon import metrics
from tasks.single_view_recon.data import (
    Views,
    embedded_views,
    image_views,
    mesh_views,
    render_views,
)
from tasks.single_view_recon.models import deform
from tasks.single_view_recon.task import PRIORS, ReconTask, labelled_row, prior_terms


class FitRecon(ReconTask):
    """Fit a deformed icosphere to one object's silhouettes and colours at the given view(s).

    Args:
        renderer: the differentiable renderer being optimised through (``renderer=soft_mesh``).
        gt_renderer: renders ground-truth targets and evaluation silhouettes (hard, supersampled).
        views: :class:`~tasks.single_view_recon.data.ViewConfig` keys (image size, fov, distance, elevation,
            azimuth) of the target views.
        fit: indices of the views used for fitting; the others are held out.
        data: embedded object: ``category`` and ``seed``.
        input: the user's data: ``mesh`` (OBJ/PLY rendered from ``views``), or ``image`` (file or list),
            ``mask`` (file(s) or null for the alpha channel), ``camera`` (YAML/JSON or null for ``views``)
            and ``gt_mesh`` (optional, for the metrics).
        losses: loss weights (term -> weight >= 0): silhouette (soft IoU), rgb (mean absolute error), laplacian, edge,
            flatten, normal.
        views_per_step: fit views rendered per step (a random subset when fewer than the fit views).
        optimize_color: also optimise per-vertex colours (else they stay grey).
        template_level: icosphere subdivision level (3: 642 vertices).
        template_radius: radius of the initial sphere [scene units].
        smoothing: lambda of the ``(I + lambda L)^-1`` offset parametrisation (Nicolet et al. 2021); 0 = raw.
        laplacian: ``uniform`` or ``cotangent`` Laplacian smoothing.
        num_points: points sampled on each surface for chamfer and F-score.
        seed: seed of the random view subsets and point samples.
    """

    def __init__(self, renderer: Renderer, gt_renderer: Renderer, views: dict,
                 fit: list[int], data: dict, input: dict, losses: dict, views_per_step: int = 1,
                 optimize_color: bool = True, template_level: int = 3, template_radius: float = 0.4,
                 smoothing: float = 10.0, laplacian: str = "uniform", num_points: int = 10000, seed: int = 0):
        super().__init__(renderer, gt_renderer, views, template_level, template_radius, smoothing, laplacian,
                         num_points, seed)
        self.losses = loss_weights(losses, ("silhouette", "rgb", *PRIORS))
        if views_per_step < 1:
            raise ConfigError(f"task.views_per_step must be >= 1, got {views_per_step}")
        unknown = sorted(set(input) - {"mesh", "image", "mask", "camera", "gt_mesh"})
        if unknown:
            raise ConfigError(f"task.input: unknown key(s) {unknown}; use mesh, image, mask, camera, gt_mesh")
        if input.get("mesh") and input.get("image"):
            raise ConfigError("give either input.mesh or input.image, not both")
        self.fit_views, self.data_config, self.input = list(fit), dict(data), dict(input)
        self.views_per_step = views_per_step
        self.optimize_color = optimize_color
        if input.get("image") and not input.get("gt_mesh"):
            self.metric = "silhouette_iou"  # nothing to compare a 3D shape with
        V = self.template_verts.shape[0]
        self.offsets = nn.Parameter(torch.zeros(1, V, 3))
        self.log_scale = nn.Parameter(torch.zeros(1, 3))
        self.translation = nn.Parameter(torch.zeros(1, 3))
        self.color_logits = nn.Parameter(torch.zeros(1, V, 3), requires_grad=optimize_color)
        self.views: Views | None = None

    # ------------------------------------------------------------------ data
    def load_views(self) -> Views:
        inp, v = self.input, self.view_config
        if inp.get("image"):
            images = inp["image"] if isinstance(inp["image"], list) else [inp["image"]]
            masks = inp.get("mask")
            masks = None if masks is None else masks if isinstance(masks, list) else [masks]
            return image_views(images, masks, inp.get("camera"), v, inp.get("gt_mesh"))
        if inp.get("mesh"):
            return mesh_views(self.gt_renderer, v, self.fit_views, inp["mesh"])
        return embedded_views(self.gt_renderer, v, self.fit_views,
                              self.data_config["category"], int(self.data_config["seed"]))

    def setup(self, device: torch.device) -> None:
        super().setup(device)
        views = self.load_views()
        self.views = Views(views.rgb.to(device), views.mask.to(device), views.cameras.to(device), views.fit,
                           views.heldout, None if views.mesh is None else views.mesh.to(device),
                           None if views.voxels is None else views.voxels.to(device))

    # ------------------------------------------------------------------ optimisation
    def param_groups(self) -> dict[str, list[Tensor]]:
        return {"offsets": [self.offsets], "pose": [self.log_scale, self.translation], "color": [self.color_logits]}

    def current(self) -> Meshes:
        verts = deform(self.template_verts, self.smooth @ self.offsets, self.log_scale, self.translation)
        return self.meshes(verts, torch.sigmoid(self.color_logits))

    def loss(self, step: int) -> dict[str, Tensor]:
        fit = torch.tensor(self.views.fit)
        if len(fit) > self.views_per_step:
            fit = fit[torch.randperm(len(fit), generator=self.step_generator(step))[: self.views_per_step]]
        idx = fit.tolist()
        mesh = self.current()
        out = self.renderer(mesh.extend(len(idx)), self.views.cameras[idx])
        w = self.losses
        terms = {"silhouette": w["silhouette"] * soft_iou(out.alpha, self.views.mask[idx])}
        if w["rgb"] > 0 and self.optimize_color:
            terms["rgb"] = w["rgb"] * (out.rgb - self.views.rgb[idx]).abs().mean()
        return {**terms, **prior_terms(mesh, w, self.laplacian)}

    # ------------------------------------------------------------------ evaluation
    def render_eval(self, mesh: Meshes, idx: list[int]) -> tuple[Tensor, Tensor]:
        """(rgb, alpha) of ``mesh`` at views ``idx`` through the hard evaluation renderer."""
        return render_views(self.gt_renderer, mesh, self.views.cameras[idx])

    def evaluate(self) -> dict[str, float]:
        v, mesh = self.views, self.current()
        _, alpha = self.render_eval(mesh, v.fit)
        out = {"silhouette_iou": metrics.silhouette_iou(alpha, v.mask[v.fit])}
        if v.heldout:
            _, alpha = self.render_eval(mesh, v.heldout)
            out["silhouette_iou_heldout"] = metrics.silhouette_iou(alpha, v.mask[v.heldout])
        if v.mesh is not None:
            out.update(self.mesh_metrics(mesh, v.mesh, v.voxels))
        return out

    def visuals(self, logger: Logger, step: int) -> None:
        v, mesh = self.views, self.current()
        for tag, idx in (("fit", v.fit[:4]), ("heldout", v.heldout[:: max(1, len(v.heldout) // 4)][:4])):
            if idx:
                rgb, alpha = self.render_eval(mesh, idx)
                columns = {
                    "target": v.rgb[idx],
                    "target silhouette": v.mask[idx],
                    "fitted silhouette": alpha,
                    "fitted colours": rgb,
                }
                logger.images(f"{tag}/target_vs_silhouette_vs_rgb", labelled_row(columns), step)
        logger.mesh("mesh", mesh.verts[0], mesh.faces[0], mesh.verts_colors[0], step)
        logger.video("turntable", self.turntable(mesh), step)

    def save(self, out_dir: Path) -> None:
        """``reconstruction.obj``, its turntable (:meth:`save_mesh`) and ``input_overlay.png`` of (up to 4 of)
        the fitted views."""
        with torch.no_grad():
            mesh = self.current()
            self.save_mesh(mesh, out_dir, "reconstruction")
            idx = self.views.fit[:4]
            self.save_input_overlay(self.views.rgb[idx], self.render_eval(mesh, idx)[1], idx, out_dir)
