"""single_view_recon ``mode=learn``: train an encoder to predict the template deformation from one image."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from runner.errors import ConfigError
from runner.geometry.meshes import Meshes
from runner.logging import Logger
from runner.losses.silhouette import soft_iou
from runner.losses.weights import loss_weights
from runner.render.base import Renderer
from tasks.single_view_recon import metrics
from tasks.single_view_recon.data import (
    category_dataset,
)
from tasks.single_view_recon.models import ReconNet, deform
from tasks.single_view_recon.task import PRIORS, ReconTask, labelled_row, prior_terms, with_sigma


class LearnRecon(ReconTask):
    """Train an encoder to predict the template deformation from one RGBA image of a category.

    Args:
        renderer: the differentiable renderer trained through (``renderer=soft_mesh``).
        gt_renderer: renders the data set and evaluation silhouettes (hard, supersampled).
        views: :class:`~tasks.single_view_recon.data.ViewConfig` keys of every object's views.
        embedded: the embedded data set: ``categories`` (list), objects per category ``train``, ``val``, ``test``,
            and ``seed``.
        losses: loss weights (term -> weight >= 0): silhouette (soft IoU, both views), laplacian, edge, flatten, normal.
        batch_size: objects per step (each seen from two random views): the global batch of a data-parallel
            run (``torchrun --nproc_per_node=N``), where each process trains on batch_size / N objects and
            the loop averages the gradients; it must then be a multiple of N. Every term of the loss is a
            mean over objects (soft IoU per image, priors per mesh) and the encoder normalises per image
            (GroupNorm), so N processes compute exactly what one process computes on the global batch.
        latent: size of the encoder's latent code.
        sharpen_from: the fraction of the run's ``steps`` after which the renderer's ``sigma`` becomes
            ``sharpen_sigma``: coarse to fine, the blurry silhouettes of the first steps carry gradients far,
            the sharp ones of the last steps restore thin parts that the blur keeps too thin; None = one
            sigma throughout.
        sharpen_sigma: the renderer's ``sigma`` from then on [NDC^2].
        refine_steps: test-time refinement: Adam steps of fitting each test prediction's offsets, scale and
            translation to its input view's silhouette (the training loss on that one view), reported as
            ``<metric>_refined`` beside the network's own metrics; 0 = off.
        refine_lr: Adam learning rate of the refinement.
        refine_sigma: the renderer's ``sigma`` during refinement [NDC^2] (with ``refine_steps`` > 0); None keeps the
            training value.
            Training wants blurry silhouettes that carry gradients far; fitting one view wants sharp ones
            (as ``mode=fit``): in the tiny run, 100 steps took the input-view IoU from 0.65 to 0.81 with
            sigma 4e-4 (~0.1 px^2 at 32 px) and not at all with the training's 3e-3.
        template_level: icosphere subdivision level (3: 642 vertices).
        template_radius: radius of the template sphere [scene units].
        smoothing: lambda of the ``(I + lambda L)^-1`` offset parametrisation (Nicolet et al. 2021); 0 = raw.
        laplacian: ``uniform`` or ``cotangent``.
        num_points: points sampled on each surface for chamfer and F-score.
        seed: seed of the batches.
    """

    data_parallel = True  # loss() draws the global batch and keeps its share (runner.distributed)

    def __init__(self, renderer: Renderer, gt_renderer: Renderer, views: dict, embedded: dict,
                 losses: dict, batch_size: int = 8, latent: int = 256, sharpen_from: float | None = None,
                 sharpen_sigma: float | None = None, refine_steps: int = 0, refine_lr: float = 0.01,
                 refine_sigma: float | None = 1e-4, template_level: int = 3,
                 template_radius: float = 0.4, smoothing: float = 10.0, laplacian: str = "uniform",
                 num_points: int = 2000, seed: int = 0):
        super().__init__(renderer, gt_renderer, views, template_level, template_radius, smoothing, laplacian,
                         num_points, seed)
        self.losses = loss_weights(losses, ("silhouette", *PRIORS))
        if batch_size < 1:
            raise ConfigError(f"task.batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        if refine_steps < 0 or refine_lr <= 0:
            raise ConfigError(f"need task.refine_steps >= 0 and task.refine_lr > 0, got {refine_steps}, {refine_lr}")
        self.refine_steps, self.refine_lr = int(refine_steps), float(refine_lr)
        sharp = refine_sigma is not None and refine_steps > 0  # no refinement: nothing to sharpen
        self.refine_renderer = with_sigma(renderer, refine_sigma, "refine_sigma") if sharp else renderer
        if (sharpen_from is None) != (sharpen_sigma is None) or not 0 <= (sharpen_from or 0) <= 1:
            raise ConfigError(f"task.sharpen_from (a fraction of the run in [0, 1]) and task.sharpen_sigma come "
                              f"together or not at all, got {sharpen_from} and {sharpen_sigma}")
        self.sharpen_from = sharpen_from
        self.sharp_renderer = None if sharpen_sigma is None else with_sigma(renderer, sharpen_sigma, "sharpen_sigma")
        self.sharp_from_step: int | None = None  # set by plan(): the first step with the sharp renderer
        self.embedded = dict(embedded)
        for split in ("train", "val", "test"):
            if int(self.embedded.get(split, 0)) < 1:
                raise ConfigError(f"task.embedded.{split} must be >= 1 objects per category")
        self.net = ReconNet(self.template_verts.shape[0], self.view_config.image_size, latent)

    # ------------------------------------------------------------------ data
    def setup(self, device: torch.device) -> None:
        super().setup(device)
        d = self.embedded
        self.splits = category_dataset(self.gt_renderer, self.view_config,
                                       list(d["categories"]), {s: int(d[s]) for s in ("train", "val", "test")},
                                       int(d["seed"]))
        self.cameras = self.view_config.cameras().to(device)
        self.voxels = {s: self.splits[s]["voxels"].to(device) for s in ("train", "val", "test")}
        self.baseline_iou = self.mean_shape_iou()

    def num_objects(self, split: str) -> int:
        return len(self.splits[split]["verts"])

    def gt_mesh(self, split: str, i: int) -> Meshes:
        s = self.splits[split]
        return Meshes([s["verts"][i]], [s["faces"][i]])

    def inputs(self, split: str, objects: Tensor, views: Tensor) -> Tensor:
        """(N,) objects and (N,) views -> (N, 4, H, W) RGBA network inputs in [0, 1]."""
        images = self.splits[split]["images"][objects, views]
        return images.to(self.device).permute(0, 3, 1, 2).float() / 255.0

    def mean_shape_iou(self) -> float:
        """``iou_3d`` on the test split of the mean training shape: the mean training occupancy, thresholded
        at the level that maximises the mean IoU on the training set."""
        train, test = self.voxels["train"][:, 0].float(), self.voxels["test"][:, 0]  # the main voxelisation
        mean = train.mean(0)

        def score(shape: Tensor, grids: Tensor) -> float:
            inter = (shape & grids).flatten(1).sum(1).float()
            union = (shape | grids).flatten(1).sum(1).float().clamp(min=1)
            return float((inter / union).mean())

        best = max((score(mean > t, train.bool()), t) for t in np.linspace(0.05, 0.95, 19))[1]
        return score(mean > best, test)

    def steps_per_epoch(self) -> int:
        return math.ceil(self.embedded["train"] * len(self.embedded["categories"]) / self.batch_size)

    # ------------------------------------------------------------------ training
    def param_groups(self) -> dict[str, list[Tensor]]:
        return {"encoder": list(self.net.encoder.parameters()), "decoder": list(self.net.decoder.parameters())}

    def predict(self, images: Tensor) -> Tensor:
        """(N, 4, H, W) -> (N, V, 3) deformed template vertices."""
        return self.deformed(*self.net(images))

    def deformed(self, offsets: Tensor, log_scale: Tensor, translation: Tensor) -> Tensor:
        """(N, V, 3) raw offsets, (N, 1) log scale, (N, 3) translation -> (N, V, 3) template vertices."""
        return deform(self.template_verts, self.smooth @ offsets, log_scale, translation)

    def silhouette_loss(self, renderer: Renderer, verts: Tensor, cameras, target: Tensor) -> dict[str, Tensor]:
        """Soft IoU of (N, V, 3) meshes rendered by N cameras against (N, H, W) silhouettes, plus priors."""
        mesh = self.meshes(verts)
        out = renderer(mesh, cameras)
        return {"silhouette": self.losses["silhouette"] * soft_iou(out.alpha, target),
                **prior_terms(mesh, self.losses, self.laplacian)}

    def batch(self, step: int) -> tuple[Tensor, Tensor, Tensor]:
        """This rank's share of the step's objects (b,), their input views (b,) and second views (b,).

        The global batch of ``batch_size`` objects, each with two different random views, is drawn from
        the step's generator the same on every rank, which keeps its share of b = batch_size / world_size
        (:meth:`~runner.task.Task.shard`): N processes see what one process sees (dwx's stand-in for
        DistributedSampler).
        """
        g = self.step_generator(step)
        n, V = self.num_objects("train"), self.cameras.batch_size
        objects = torch.randint(n, (self.batch_size,), generator=g)
        first = torch.randint(V, (self.batch_size,), generator=g)
        second = (first + 1 + torch.randint(V - 1, (self.batch_size,), generator=g)) % V  # a different view
        return self.shard(objects), self.shard(first), self.shard(second)

    def plan(self, total_steps: int) -> None:
        """The sharp phase starts at the fraction ``sharpen_from`` of the run's ``total_steps``."""
        if self.sharpen_from is not None:
            self.sharp_from_step = round(self.sharpen_from * total_steps)

    def training_renderer(self, step: int) -> Renderer:
        """The renderer of training step ``step``: the sharp one from the first sharp step on."""
        if self.sharp_from_step is None or step < self.sharp_from_step:
            return self.renderer
        return self.sharp_renderer

    def loss(self, step: int) -> dict[str, Tensor]:
        objects, first, second = self.batch(step)
        verts = self.predict(self.inputs("train", objects, first))
        views = torch.stack([first, second], 1).reshape(-1)  # (2B,): both views of object 0, then 1, ...
        target = self.splits["train"]["images"][objects.repeat_interleave(2), views][..., 3].to(self.device) / 255.0
        # each mesh twice, once per view; the priors' mean over the copies is their mean over the objects
        return self.silhouette_loss(self.training_renderer(step), verts.repeat_interleave(2, 0),
                                    self.cameras[views.tolist()], target)

    # ------------------------------------------------------------------ evaluation
    def eval_views(self, objects: Tensor) -> Tensor:
        """(N,) object indices -> (N,) input views spread over the orbit: object i is seen from view 7 i mod V."""
        return (objects * 7) % self.cameras.batch_size

    def first_per_category(self, split: str, k: int) -> Tensor:
        """Indices of the first ``k`` objects of each category of a split, category by category."""
        labels = self.splits[split]["category"]
        return torch.cat([torch.nonzero(labels == c)[:k, 0] for c in range(len(self.embedded["categories"]))])

    def split_metrics(self, split: str, surface: bool, objects: Tensor | None = None,
                      verts: Tensor | None = None) -> dict[str, float]:
        """Metrics of the network's predictions for (N,) ``objects`` of a split (default: all of them), or of
        given (N, V, 3) ``verts``; with several categories also ``iou_3d_<category>``."""
        objects = torch.arange(self.num_objects(split)) if objects is None else objects
        views = self.eval_views(objects)
        if verts is None:
            verts = torch.cat([self.predict(self.inputs(split, o, v))
                               for o, v in zip(objects.split(64), views.split(64))])
        ious, chamfers, fscores = [], [], []  # ious: per object {"iou_3d": ..., "iou_3d_parity": ...}
        for k, i in enumerate(objects.tolist()):
            pred = self.meshes(verts[k : k + 1])
            ious.append(metrics.iou_3d(pred, self.voxels[split][i]))
            if surface:
                s = metrics.surface_metrics(pred, self.gt_mesh(split, i), self.num_points, self.seed)
                chamfers.append(s["chamfer"])
                fscores.append(s["fscore"])
        out = {name: float(np.mean([iou[name] for iou in ious])) for name in metrics.IOU_METRICS}
        categories = list(self.embedded["categories"])
        if len(categories) > 1:
            labels = self.splits[split]["category"][objects].numpy()
            per_object = np.array([iou["iou_3d"] for iou in ious])
            out.update({f"iou_3d_{name}": float(per_object[labels == c].mean())
                        for c, name in enumerate(categories) if (labels == c).any()})
        if surface:
            out.update(chamfer=float(np.mean(chamfers)), fscore=float(np.mean(fscores)))
            out.update(self.silhouette_metrics(split, objects, verts, views))
        return out

    def silhouette_metrics(self, split: str, objects: Tensor, verts: Tensor, views: Tensor) -> dict[str, float]:
        """Silhouette IoU of (N, V, 3) predictions of (N,) objects at their (N,) input views and at the
        opposite (held-out) views."""
        V = self.cameras.batch_size
        masks = self.splits[split]["images"][..., 3]
        out = {}
        for name, idx in (("silhouette_iou", views), ("silhouette_iou_heldout", (views + V // 2) % V)):
            alphas = []
            for i in range(0, len(verts), 16):
                mesh = self.meshes(verts[i : i + 16])
                alphas.append(self.gt_renderer(mesh, self.cameras[idx[i : i + 16].tolist()]).alpha)
            target = masks[objects, idx].to(self.device).float() / 255.0
            out[name] = metrics.silhouette_iou(torch.cat(alphas), target)
        return out

    def refine(self, split: str, chunk: int = 32) -> Tensor:
        """Test-time refinement: (N, V, 3) vertices fitted to each object's input-view silhouette.

        Starts from the network's offsets, scale and translation and takes ``refine_steps`` Adam steps on
        the silhouette loss and priors at the input view only (no other view is seen), ``chunk`` objects
        at a time; every term is a mean over objects and Adam is per coordinate, so each object is fitted
        as if alone.
        """
        n = self.num_objects(split)
        views = self.eval_views(torch.arange(n))
        masks = self.splits[split]["images"][..., 3]
        refined = []
        for idx in torch.arange(n).split(chunk):
            with torch.no_grad():
                predicted = self.net(self.inputs(split, idx, views[idx]))
            params = [p.clone().requires_grad_(True) for p in predicted]
            cameras = self.cameras[views[idx].tolist()]
            target = masks[idx, views[idx]].to(self.device).float() / 255.0
            optimizer = torch.optim.Adam(params, lr=self.refine_lr)
            with torch.enable_grad():
                for _ in range(self.refine_steps):
                    optimizer.zero_grad(set_to_none=True)
                    loss = self.silhouette_loss(self.refine_renderer, self.deformed(*params), cameras, target)
                    sum(loss.values()).backward()
                    optimizer.step()
            refined.append(self.deformed(*params).detach())
        return torch.cat(refined)

    def evaluate(self) -> dict[str, float]:
        self.net.eval()
        test = self.split_metrics("test", surface=True)
        val = self.split_metrics("val", surface=False)
        # as many training objects as test objects per category: the gap to iou_3d is the overfitting
        train = self.split_metrics("train", surface=False,
                                   objects=self.first_per_category("train", int(self.embedded["test"])))
        if self.refine_steps:
            refined = self.split_metrics("test", surface=True, verts=self.refine("test"))
            test.update({f"{k}_refined": v for k, v in refined.items()})
        self.net.train()
        return {**test, "val_iou_3d": val["iou_3d"], "train_iou_3d": train["iou_3d"],
                "baseline_iou_3d": self.baseline_iou}

    def summary(self, metrics_: dict[str, float]) -> str:
        text = (f"iou_3d={metrics_['iou_3d']:.4g} (mean-shape baseline {metrics_['baseline_iou_3d']:.4g}; "
                f"voxel-centre parity {metrics_['iou_3d_parity']:.4g})")
        if "iou_3d_refined" in metrics_:
            text += f", after test-time refinement {metrics_['iou_3d_refined']:.4g}"
        return text

    def visuals(self, logger: Logger, step: int) -> None:
        self.net.eval()
        objects = torch.arange(min(4, self.num_objects("test")))
        views = self.eval_views(objects)
        verts = self.predict(self.inputs("test", objects, views))
        mesh = self.meshes(verts)
        out = self.gt_renderer(mesh, self.cameras[views.tolist()])
        images = self.splits["test"]["images"][objects, views].to(self.device).float() / 255.0
        columns = {
            "input": images[..., :3],
            "input silhouette": images[..., 3],
            "predicted silhouette": out.alpha,
            "predicted shape": out.rgb,
        }
        logger.images("test/input_vs_silhouette_vs_rgb", labelled_row(columns), step)
        first = self.meshes(verts[:1])
        logger.mesh("mesh", first.verts[0], first.faces[0], None, step)
        logger.video("turntable", self.turntable(first), step)
        self.net.train()

    def save(self, out_dir: Path) -> None:
        """``test_object_0.obj`` (the first test object's prediction), its turntable (:meth:`save_mesh`) and
        ``input_overlay.png`` of its input view."""
        self.net.eval()
        with torch.no_grad():
            objects = torch.arange(1)
            views = self.eval_views(objects)
            inputs = self.inputs("test", objects, views)
            mesh = self.meshes(self.predict(inputs))
            self.save_mesh(mesh, out_dir, "test_object_0")
            alpha = self.gt_renderer(mesh, self.cameras[views.tolist()]).alpha
            self.save_input_overlay(inputs[:, :3].permute(0, 2, 3, 1), alpha, views.tolist(), out_dir)
