"""single_view_recon ``mode=fit``: deform the template to match the silhouettes and colours of given view(s).

Coarse to fine, with no per-object setting: the renderer's blur ``sigma`` starts wide (1 pixel^2: gradients
reach silhouette parts far from the sphere, such as legs and wings) and narrows geometrically to a sharp 0.01
pixel^2, at which the hard silhouette of the mesh matches its soft one (a soft silhouette fitted at a wider blur
spreads over the mesh's outline, so its hard silhouette is eroded). The first part of the run
(``coarse_until``) renders at ``coarse_size`` pixels against the targets shrunk to it (the whole shape is found
at a quarter of the cost), the rest at the views' own size, where thin parts (a lamp's pole, chair legs) are
pixels wide rather than fractions of one. Optionally (``subdivide_at``) the template is subdivided 1-to-4 during
the run (:mod:`~.remesh`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runner.errors import ConfigError
from runner.geometry.cameras import PinholeCamera
from runner.geometry.meshes import Meshes
from runner.logging import Logger
from runner.losses.silhouette import soft_iou
from runner.losses.weights import loss_weights
from runner.render.base import TEXTURED_MESHES, Renderer
from runner.task import check_data_source
from tasks.single_view_recon import metrics, texture
from tasks.single_view_recon.data import MeshFile, Photos, Views, embedded_views, render_views
from tasks.single_view_recon.models import deform, smoothing_operator
from tasks.single_view_recon.remesh import icosphere_faces, level_size, subdivide
from tasks.single_view_recon.task import PRIORS, ReconTask, labelled_row, prior_terms, with_sigma

MAX_LEVEL = 4  # finest template level (2562 vertices): the dense smoothing operator is V x V
log = logging.getLogger(__name__)


class FitRecon(ReconTask):
    """Fit a deformed icosphere to one object's silhouettes and colours at the given view(s).

    Args:
        renderer: the differentiable renderer being optimised through (``renderer=soft_mesh``).
        gt_renderer: renders ground-truth targets and evaluation silhouettes (hard, supersampled).
        views: :class:`~tasks.single_view_recon.data.ViewConfig` keys (image size, fov, distance, elevation,
            azimuth) of the target views.
        fit: indices of the views used for fitting; the others are held out.
        data: the user's data source (``data=mesh``: :class:`~tasks.single_view_recon.data.MeshFile`,
            ``data=photo``: :class:`~tasks.single_view_recon.data.Photos`); None = the embedded object.
        embedded: the embedded object fitted when ``data`` is None: ``category`` and ``seed``.
        losses: loss weights (term -> weight >= 0): silhouette (soft IoU), rgb (mean absolute error), laplacian, edge,
            flatten, normal.
        views_per_step: fit views rendered per step (a random subset when fewer than the fit views).
        optimize_color: also optimise the colours (per-vertex, or the texture; else they stay grey).
        texture_size: ``[Ht, Wt]`` texels (Wt even) of a UV texture on the template (an equirectangular atlas,
            :mod:`~tasks.single_view_recon.texture`) instead of per-vertex colours; ``"auto"`` = ``[H, 2H]`` of the
            input images (about one texel per pixel) for ``data=photo`` when the renderer draws textures, else
            per-vertex colours; None = per-vertex colours.
        template_level: icosphere subdivision level at the start (3: 642 vertices).
        subdivide_at: fractions of the run, in (0, 1), at each of which the template is subdivided 1-to-4 (its
            shape kept, the smooth parametrisation rebuilt); ``template_level + len(subdivide_at) <= 4``.
        blur_start: renderer ``sigma`` at the first step [pixel^2, converted to the renderer's NDC^2 at the rendered
            size], narrowed geometrically to ``blur_end`` by ``blur_until``: a wide blur first reaches far
            silhouette parts, a sharp one last makes the hard silhouette match (the soft one at a wider blur grows
            over its mesh's outline); null = the renderer's ``sigma`` throughout (also without a ``sigma``).
        blur_end: renderer ``sigma`` from ``blur_until`` on [pixel^2].
        blur_until: fraction of the run, in (0, 1], at which the blur reaches ``blur_end``.
        coarse_size: image size [px] the fit renders at until ``coarse_until`` (targets shrunk by area averaging);
            null = the views' size throughout.
        coarse_until: fraction of the run, in [0, 1), rendered at ``coarse_size``.
        template_radius: radius of the initial sphere [scene units].
        smoothing: lambda of the ``(I + lambda L)^-1`` offset parametrisation (Nicolet et al. 2021); 0 = raw
            per-vertex offsets (one view asks for detail, such as thin parts, rather than volume).
        laplacian: ``uniform`` or ``cotangent`` Laplacian smoothing.
        num_points: points sampled on each surface for chamfer and F-score.
        seed: seed of the random view subsets and point samples.
    """

    def __init__(
        self,
        renderer: Renderer,
        gt_renderer: Renderer,
        views: dict,
        fit: list[int],
        data: MeshFile | Photos | None,
        embedded: dict,
        losses: dict,
        views_per_step: int = 8,
        optimize_color: bool = True,
        texture_size: list[int] | str | None = "auto",
        template_level: int = 3,
        template_radius: float = 0.4,
        smoothing: float = 0.0,
        laplacian: str = "uniform",
        num_points: int = 10000,
        seed: int = 0,
        subdivide_at: list[float] = (),
        blur_start: float | None = 1.0,
        blur_end: float = 0.01,
        blur_until: float = 0.7,
        coarse_size: int | None = 64,
        coarse_until: float = 0.5,
    ):
        super().__init__(
            renderer, gt_renderer, views, template_level, template_radius, smoothing, laplacian, num_points, seed
        )
        self.subdivide_at = sorted(float(f) for f in subdivide_at)
        if any(not 0 < f < 1 for f in self.subdivide_at):
            raise ConfigError(f"task.subdivide_at must list fractions of the run in (0, 1), got {list(subdivide_at)}")
        if template_level + len(self.subdivide_at) > MAX_LEVEL:
            raise ConfigError(
                f"task.template_level + len(task.subdivide_at) must be <= {MAX_LEVEL} "
                f"({level_size(MAX_LEVEL)} vertices), got {template_level} + {len(self.subdivide_at)}"
            )
        if blur_start is not None and not (
            0 < blur_start < math.inf and 0 < blur_end < math.inf and 0 < blur_until <= 1
        ):
            raise ConfigError(
                f"task.blur_start and task.blur_end must be > 0 and task.blur_until in (0, 1], got "
                f"{blur_start}, {blur_end} and {blur_until}"
            )
        if blur_start is not None and not hasattr(renderer, "sigma"):
            log.warning("task.blur_start is ignored: renderer %s has no sigma", type(renderer).__name__)
            blur_start = None
        if coarse_size is not None and not (isinstance(coarse_size, int) and coarse_size > 0 and 0 <= coarse_until < 1):
            raise ConfigError(
                f"task.coarse_size must be null or a size > 0 [px] and task.coarse_until in [0, 1), got "
                f"{coarse_size} and {coarse_until}"
            )
        self.coarse_size, self.coarse_until, self.coarse_steps = coarse_size, float(coarse_until), 0
        self._coarse: tuple[Tensor, Tensor] | None = None  # (mask, rgb) of every view shrunk to coarse_size
        self.blur_start, self.blur_end, self.blur_until = blur_start, float(blur_end), float(blur_until)
        self.smoothing, self.start_level = smoothing, template_level
        self.subdivide_steps: list[int] = []
        self.total_steps = 1
        self.losses = loss_weights(losses, ("silhouette", "rgb", *PRIORS))
        if views_per_step < 1:
            raise ConfigError(f"task.views_per_step must be >= 1, got {views_per_step}")
        check_data_source(data, (MeshFile, Photos), "single_view_recon", "data=mesh or data=photo (null: embedded)")
        self.fit_views, self.data, self.embedded = list(fit), data, dict(embedded)
        self.views_per_step = views_per_step
        self.optimize_color = optimize_color
        if data is not None and not data.has_shape:
            self.metric = "silhouette_iou"  # nothing to compare a 3D shape with
        # Parameters are sized for the finest level; level l uses their first V_l rows (remesh.py).
        V = level_size(template_level + len(self.subdivide_at))
        self.offsets = nn.Parameter(torch.zeros(1, V, 3))
        self.log_scale = nn.Parameter(torch.zeros(1, 3))
        self.translation = nn.Parameter(torch.zeros(1, 3))
        self.color_logits = nn.Parameter(torch.zeros(1, V, 3), requires_grad=optimize_color)
        self.texture_size = self._texture_size(texture_size, data, renderer)
        self._uvs: tuple[int, Tensor, Tensor] | None = None  # (level, verts_uvs, faces_uvs) of _texture_uvs()
        self.register_parameter("texture_logits", None)  # (Ht, Wt, 3), made in setup() when there is a texture
        base = torch.zeros(V, 3)
        base[: self.template_verts.shape[0]] = self.template_verts
        self.register_buffer("base", base)  # (V, 3) undeformed vertices of the current level (first V_l rows)
        self.register_buffer("directions", base.clone())  # (V, 3) each vertex's direction on the sphere: its UV
        self.register_buffer("level", torch.tensor(template_level))  # current template level
        self.built_level = template_level  # the level the template, faces and smoothing operator were built for
        self.views: Views | None = None
        self.baseline: dict[str, float] = {}

    # ------------------------------------------------------------------ data
    def load_views(self) -> Views:
        if self.data is not None:
            return self.data.views(self.gt_renderer, self.view_config, self.fit_views)
        return embedded_views(
            self.gt_renderer, self.view_config, self.fit_views, self.embedded["category"], int(self.embedded["seed"])
        )

    def setup(self, device: torch.device) -> None:
        super().setup(device)
        views = self.load_views()
        self.views = Views(
            views.rgb.to(device),
            views.mask.to(device),
            views.cameras.to(device),
            views.fit,
            views.heldout,
            None if views.mesh is None else views.mesh.to(device),
            None if views.voxels is None else views.voxels.to(device),
        )
        if self.texture_size == "auto":  # about one texel per pixel around the object's circumference
            height = int(views.rgb.shape[1])
            self.texture_size = [height, 2 * height]
        if self.texture_size is not None:
            logits = texture.initial_logits(self.texture_size, views.rgb[views.fit], views.mask[views.fit])
            self.texture_logits = nn.Parameter(logits.to(device), requires_grad=self.optimize_color)
        with torch.no_grad():
            self.baseline = {f"baseline_{k}": v for k, v in self.evaluate().items() if k != "iou_3d_parity"}

    @staticmethod
    def _texture_size(size: list[int] | str | None, data: object, renderer: Renderer) -> list[int] | str | None:
        """``texture_size`` checked; "auto" stays "auto" (sized in setup) for a photo, else it is None."""
        draws_textures = TEXTURED_MESHES in getattr(renderer, "draws", ())
        if size == "auto":
            return "auto" if isinstance(data, Photos) and draws_textures else None
        if size is None:
            return None
        if isinstance(size, str) or len(size) != 2 or size[0] < 1 or size[1] < 2 or size[1] % 2:
            raise ConfigError(f"task.texture_size must be auto, null or [Ht, Wt] with Wt even, got {size}")
        if not draws_textures:
            raise ConfigError(
                f"task.texture_size={list(size)} needs a renderer that draws UV textures (renderer=soft_mesh); "
                f"{type(renderer).__name__} draws vertex colours: set task.texture_size=null"
            )
        return [int(size[0]), int(size[1])]

    def plan(self, total_steps: int) -> None:
        """Steps of the subdivisions and of the end of the sigma schedule."""
        self.total_steps = total_steps
        self.subdivide_steps = [max(1, round(f * total_steps)) for f in self.subdivide_at]
        smaller = self.coarse_size is not None and self.coarse_size < self.views.cameras.image_size[0]
        self.coarse_steps = round(self.coarse_until * total_steps) if smaller else 0

    # ------------------------------------------------------------------ optimisation
    def param_groups(self) -> dict[str, list[Tensor]]:
        color = self.color_logits if self.texture_logits is None else self.texture_logits
        return {"offsets": [self.offsets], "pose": [self.log_scale, self.translation], "color": [color]}

    def current(self) -> Meshes:
        self._build()
        V = self.template_verts.shape[0]
        verts = deform(self.template_verts, self.smooth @ self.offsets[:, :V], self.log_scale, self.translation)
        if self.texture_logits is None:
            return self.meshes(verts, torch.sigmoid(self.color_logits[:, :V]))
        verts_uvs, faces_uvs = self._texture_uvs()
        image = texture.periodic(torch.sigmoid(self.texture_logits))
        return self.meshes(verts).with_texture([verts_uvs], [faces_uvs], [image])

    def _texture_uvs(self) -> tuple[Tensor, Tensor]:
        """(3F, 2) texture coordinates and (F, 3) their indices for the current level's faces (cached per level)."""
        level = int(self.level)
        if self._uvs is None or self._uvs[0] != level:
            V = self.template_verts.shape[0]
            self._uvs = (level, *texture.sphere_uvs(self.directions[:V], self.template_faces))
        return self._uvs[1], self._uvs[2]

    def _build(self) -> None:
        """Template vertices, faces and smoothing operator of the current level (after a subdivision or a resume)."""
        level = int(self.level)
        if level == self.built_level:
            return
        V = level_size(level)
        self.template_verts = self.base[:V]
        self.template_faces = icosphere_faces(level, self.base.device)
        self.smooth = smoothing_operator(V, self.template_faces.cpu(), self.smoothing).to(self.base.device)
        self.templates = {}
        self.built_level = level

    @torch.no_grad()
    def refine(self) -> None:
        """Split every face of the current shape 1-to-4 (its shape and colours kept, offsets reset to zero)."""
        self._build()
        V = self.template_verts.shape[0]
        if level_size(int(self.level) + 1) > self.base.shape[0]:
            raise RuntimeError(f"the template is at its finest level {int(self.level)} (task.subdivide_at)")
        shape = self.template_verts + self.smooth @ self.offsets[0, :V]  # (V, 3) undeformed coordinates
        finer, _ = subdivide(shape, self.template_faces, int(self.level))
        colors, _ = subdivide(self.color_logits[0, :V], self.template_faces, int(self.level))
        directions, _ = subdivide(self.directions[:V], self.template_faces, int(self.level))
        self.base[: finer.shape[0]] = finer
        self.directions[: finer.shape[0]] = directions
        self.color_logits[0, : finer.shape[0]] = colors
        self.offsets.zero_()
        self.level += 1
        self._build()

    def fit_renderer(self, step: int, size: int) -> Renderer:
        """The renderer at ``step``, drawing ``size`` pixels: its ``sigma`` narrowed geometrically from the start blur
        to the end blur [pixel^2 at that size]."""
        if self.blur_start is None:
            return self.renderer
        t = min(1.0, step / max(1.0, self.blur_until * self.total_steps))
        pixel = 2.0 / size  # NDC units per pixel (the shorter side spans 2)
        sigma = self.blur_start * (self.blur_end / self.blur_start) ** t * pixel**2
        return with_sigma(self.renderer, sigma, "blur_start")

    def targets(self, step: int, idx: list[int]) -> tuple[PinholeCamera, Tensor, Tensor]:
        """The cameras, (N, S, S, 3) colours and (N, S, S) silhouettes of views ``idx`` at the size of ``step``."""
        v = self.views
        if step >= self.coarse_steps:
            return v.cameras[idx], v.rgb[idx], v.mask[idx]
        size = (self.coarse_size, self.coarse_size)
        if self._coarse is None:  # area averaging: a pixel's coverage of the finer silhouette
            mask = F.interpolate(v.mask[:, None], size=size, mode="area")[:, 0]
            rgb = F.interpolate(v.rgb.permute(0, 3, 1, 2), size=size, mode="area").permute(0, 2, 3, 1)
            self._coarse = (mask, rgb)
        mask, rgb = self._coarse
        return v.cameras[idx].resized(size), rgb[idx], mask[idx]

    def loss(self, step: int) -> dict[str, Tensor]:
        while int(self.level) - self.start_level < sum(step >= s for s in self.subdivide_steps):
            self.refine()
        fit = torch.tensor(self.views.fit)
        if len(fit) > self.views_per_step:
            fit = fit[torch.randperm(len(fit), generator=self.step_generator(step))[: self.views_per_step]]
        idx = fit.tolist()
        mesh = self.current()
        cameras, rgb, mask = self.targets(step, idx)
        out = self.fit_renderer(step, cameras.image_size[0])(mesh.extend(len(idx)), cameras)
        w = self.losses
        terms = {"silhouette": w["silhouette"] * soft_iou(out.alpha, mask)}
        if w["rgb"] > 0 and self.optimize_color:
            error = (out.rgb - rgb).abs()  # (N, H, W, 3)
            if self.texture_logits is not None:  # the object's pixels only: the background would paint the
                mask = mask[..., None]  # texels at the silhouette's border (grazing faces) black
                error = error * mask / mask.mean().clamp(min=1e-6)
            terms["rgb"] = w["rgb"] * error.mean()
        return {**terms, **prior_terms(mesh, w, self.laplacian)}

    # ------------------------------------------------------------------ evaluation
    def render_eval(self, mesh: Meshes, idx: list[int]) -> tuple[Tensor, Tensor]:
        """(rgb, alpha) of ``mesh`` at views ``idx`` through the hard evaluation renderer."""
        return render_views(self.gt_renderer, mesh, self.views.cameras[idx])

    def evaluate(self) -> dict[str, float]:
        v, mesh = self.views, self.current()
        rgb, alpha = self.render_eval(mesh, v.fit)
        out = {"silhouette_iou": metrics.silhouette_iou(alpha, v.mask[v.fit])}
        if self.optimize_color:
            out["color_error"] = metrics.color_error(rgb, v.rgb[v.fit], v.mask[v.fit])
        if v.heldout:
            _, alpha = self.render_eval(mesh, v.heldout)
            out["silhouette_iou_heldout"] = metrics.silhouette_iou(alpha, v.mask[v.heldout])
        if v.mesh is not None:
            out.update(self.mesh_metrics(mesh, v.mesh, v.voxels))
        return {**out, **self.baseline}

    def summary(self, metrics: dict[str, float]) -> str:
        """The main metric beside the initial sphere's, and the silhouette IoU at the input and held-out views."""
        parts = [f"{self.metric}={metrics[self.metric]:.4g}"]
        if f"baseline_{self.metric}" in metrics:
            parts[0] += f" (initial sphere {metrics[f'baseline_{self.metric}']:.4g})"
        n_fit, n_held = len(self.views.fit), len(self.views.heldout)
        parts.append(f"silhouette IoU at the {n_fit} input view(s) {metrics['silhouette_iou']:.4g}")
        if "silhouette_iou_heldout" in metrics:
            parts.append(f"at the {n_held} held-out view(s) {metrics['silhouette_iou_heldout']:.4g}")
        return "; ".join(parts)

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
        if mesh.texture is None:
            colors = mesh.verts_colors[0]
        else:  # TensorBoard's mesh plugin shows vertex colours
            colors = texture.vertex_colors(mesh.texture[0], self.directions[: len(mesh.verts[0])])
        logger.mesh("mesh", mesh.verts[0], mesh.faces[0], colors, step)
        logger.video("turntable", self.turntable(mesh), step)

    def save(self, out_dir: Path) -> None:
        """``reconstruction.obj``, its turntable (:meth:`save_mesh`) and ``input_overlay.png`` of (up to 4 of)
        the fitted views."""
        with torch.no_grad():
            mesh = self.current()
            self.save_mesh(mesh, out_dir, "reconstruction")
            idx = self.views.fit[:4]
            self.save_input_overlay(self.views.rgb[idx], self.render_eval(mesh, idx)[1], idx, out_dir)
