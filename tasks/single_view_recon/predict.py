"""Meshes from new images with a trained encoder: ``dwx predict RUN_DIR IMG.png [IMG2.png ...] --out DIR``.

:func:`predict_images` is single_view_recon's ``dwx.predictors`` entry point (pyproject.toml), for runs of
``mode=learn`` (:class:`~tasks.single_view_recon.learn.LearnRecon`). It rebuilds the run's network and template
and predicts one deformed template per image with :meth:`LearnRecon.predict`, the method training and evaluation
use.

A run folder is data, never code: ``.hydra/config.yaml`` is read without resolving anything, and only the plain
values that shape the network and the template are taken from it, each checked (``task.views.image_size``,
``task.template_level``, ``task.template_radius``, ``task.smoothing``, ``task.latent``); nothing is
instantiated from it, and no renderer or data set is built. The weights come from ``checkpoints/last.pt``, read
with ``weights_only=True``: the moving average (``loop.ema_decay``) when the run kept one, else the trained
weights, i.e. the weights the run was evaluated and saved with (:meth:`runner.loop.Loop.evaluated_weights`).
Their shapes are compared with the config's network on the meta device before anything is allocated.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from runner.errors import InputError, first_line
from runner.geometry.mesh_io import save_obj
from runner.predict import plain, read_run_config, show
from tasks.single_view_recon.data import read_image
from tasks.single_view_recon.learn import LearnRecon
from tasks.single_view_recon.models import ReconNet
from tasks.single_view_recon.remesh import level_size

TASK_TARGET = "tasks.single_view_recon.learn.LearnRecon"
CHECKPOINT = Path("checkpoints") / "last.pt"
RGBA_HINT = "give an RGBA image (alpha = the object's silhouette)"
MAX_TEMPLATE_LEVEL = 4  # 2,562 vertices, as mode=fit allows; the learned runs use 2-3 (smoothing is a dense V x V)
BATCH = 32  # images per forward pass


def predict_images(run_dir: Path, inputs: list[Path], out_dir: Path) -> str:
    """One mesh per image, predicted by the encoder trained in ``run_dir`` (a single_view_recon ``mode=learn`` run).

    Every image is read and checked before anything is written. Each becomes ``out_dir/<image stem>.obj``: the
    template (V vertices, F faces) deformed by the network, in the scene frame of the run's views (+y up, the
    object around the origin). The network predicts shape only, so the OBJ has no vertex colours.

    Args:
        run_dir: the run folder (``.hydra/config.yaml`` and ``checkpoints/last.pt``).
        inputs: RGBA images (PNG, WebP, ...; alpha = the object's silhouette), each framed as the training views
            are: the whole object, centred. See :func:`read_rgba` for how they are prepared.
        out_dir: the output folder (created).
    Returns:
        The line ``dwx predict`` prints, e.g. ``wrote 2 meshes (642 vertices each, shape only) to DIR``.
    """
    task, image_size, note = load_model(run_dir)
    stems: dict[str, Path] = {}
    for path in inputs:
        if path.stem in stems:
            raise InputError(f"{stems[path.stem]} and {path} would both be written to {path.stem}.obj; rename one")
        stems[path.stem] = path
    images = torch.stack([read_rgba(path, image_size) for path in inputs])  # (N, 4, S, S)
    with torch.no_grad():
        verts = torch.cat([task.predict(chunk) for chunk in images.split(BATCH)])  # (N, V, 3)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is a file; give a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    faces = task.template_faces.cpu()
    for path, v in zip(inputs, verts):
        save_obj(out_dir / f"{path.stem}.obj", (v.cpu(), faces))
    n, V = len(inputs), verts.shape[1]
    meshes = "1 mesh" if n == 1 else f"{n} meshes"
    return f"wrote {meshes} ({V} vertices{'' if n == 1 else ' each'}, shape only) to {out_dir}{note}"


def load_model(run_dir: Path) -> tuple[LearnRecon, int, str]:
    """The run's :class:`LearnRecon` in eval mode with the weights it was evaluated with, not set up (no data set,
    no renderer: only :meth:`LearnRecon.predict` works), its input size S in pixels, and a note for the summary
    when the run did not complete (its checkpoint is then an earlier state)."""
    cfg = read_run_config(run_dir)
    target = plain(cfg, "task", "_target_")
    if target != TASK_TARGET:
        raise InputError(f"{run_dir} is a run of {show(target)}, not of task=single_view_recon mode=learn")
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise InputError(f"{run_dir} has no {CHECKPOINT}: the run stopped before its first checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which, not a pickle traceback
        raise InputError(f"{path}: cannot read the checkpoint: {first_line(e)}") from e
    weights = evaluated_weights(checkpoint, path)
    settings = network_settings(cfg)
    _check_shapes(settings, weights, path)
    task = LearnRecon(
        None,  # renderer, gt_renderer: nothing is rendered
        None,
        {"image_size": settings["image_size"]},
        {"categories": [], "train": 1, "val": 1, "test": 1, "seed": 0},  # no data set is built (no setup())
        {"silhouette": 1.0},
        latent=settings["latent"],
        template_level=settings["template_level"],
        template_radius=settings["template_radius"],
        smoothing=settings["smoothing"],
    )
    try:
        task.load_state_dict(weights)
    except RuntimeError as e:  # missing or unexpected tensors
        raise InputError(f"{path} does not fit the run's config: {first_line(e)}") from e
    return task.eval(), settings["image_size"], _status_note(run_dir, checkpoint)


def evaluated_weights(checkpoint: object, path: Path) -> dict[str, Tensor]:
    """The task weights a checkpoint's run was evaluated with: the moving average (``ema.shadow``) when it kept
    one, else ``task``; InputError if the file is not a dwx checkpoint."""
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("task"), dict):
        raise InputError(f"{path} is not a dwx checkpoint (no task state)")
    ema = checkpoint.get("ema")
    weights = ema.get("shadow") if isinstance(ema, dict) else checkpoint["task"]
    if not isinstance(weights, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in weights.items()):
        raise InputError(f"{path}: the {'ema' if isinstance(ema, dict) else 'task'} state is not a mapping of tensors")
    return weights


def network_settings(cfg) -> dict:
    """The run's values that shape the network and the template, checked: ``image_size`` (task.views), an int
    >= 16; ``template_level``, an int in [0, MAX_TEMPLATE_LEVEL]; ``latent``, an int >= 1; ``template_radius`` > 0
    and ``smoothing`` >= 0, finite numbers. InputError naming the key otherwise."""
    values = {
        "image_size": plain(cfg, "task", "views", "image_size"),
        "template_level": plain(cfg, "task", "template_level"),
        "latent": plain(cfg, "task", "latent"),
        "template_radius": plain(cfg, "task", "template_radius"),
        "smoothing": plain(cfg, "task", "smoothing"),
    }
    keys = {"image_size": "task.views.image_size"}
    checks = {
        "image_size": (lambda v: _is_int(v) and v >= 16, "an integer >= 16"),
        "template_level": (
            lambda v: _is_int(v) and 0 <= v <= MAX_TEMPLATE_LEVEL,
            f"an integer in [0, {MAX_TEMPLATE_LEVEL}]",
        ),
        "latent": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
        "template_radius": (lambda v: _is_number(v) and v > 0, "a finite number > 0"),
        "smoothing": (lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
    }
    for name, (ok, what) in checks.items():
        if not ok(values[name]):
            raise InputError(f"{keys.get(name, 'task.' + name)} must be {what}, got {show(values[name])}")
    return values


def _is_int(value: object) -> bool:
    return type(value) is int


def _is_number(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _check_shapes(settings: dict, weights: dict[str, Tensor], path: Path) -> None:
    """The config's network, built on the meta device (no memory), must have the checkpoint's tensors and shapes."""
    with torch.device("meta"):
        net = ReconNet(level_size(settings["template_level"]), settings["image_size"], settings["latent"])
    expected = {f"net.{k}": tuple(v.shape) for k, v in net.state_dict().items()}
    given = {k: tuple(v.shape) for k, v in weights.items()}
    if expected.keys() != given.keys():
        missing, extra = sorted(expected.keys() - given.keys()), sorted(given.keys() - expected.keys())
        raise InputError(
            f"{path} is not the checkpoint of a single_view_recon mode=learn run: it lacks "
            f"{show(missing, 60)} and has {show(extra, 60)}"
        )
    for key, shape in expected.items():
        if given[key] != shape:
            raise InputError(
                f"{path} does not fit the run's config (task.views.image_size, task.template_level, task.latent): "
                f"{key} is {given[key]} in the checkpoint, {shape} by the config"
            )


def _status_note(run_dir: Path, checkpoint: dict) -> str:
    """``''`` for a completed run; else a note that the checkpoint holds the state at its step."""
    try:
        status = json.loads((run_dir / "metrics.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        status = None
    if status in ("completed", None):
        return ""
    return f" (the run is {show(status, 30)}: weights of its checkpoint at step {show(checkpoint.get('step'), 20)})"


def read_rgba(path: Path, size: int) -> Tensor:
    """An RGBA image as the network's input: (4, S, S) with S = ``size``, RGB and alpha in [0, 1].

    As the training images are made: the object's colour over a black background (RGB premultiplied by alpha,
    as the renderer composites over black), alpha the silhouette. A non-square image is padded to a square with
    transparent pixels around its centre, then resized to S x S (area averaging when shrinking, bilinear when
    enlarging). A missing or unreadable file, or an image without an alpha channel or whose alpha is empty or
    opaque everywhere, is an InputError.
    """
    pixels = read_image(path, "dwx predict")  # (H, W[, C]) float in [0, 1]
    if pixels.ndim != 3 or pixels.shape[-1] != 4:
        raise InputError(f"{path} has no alpha channel; {RGBA_HINT}")
    rgba = torch.from_numpy(pixels.copy()).permute(2, 0, 1)  # (4, H, W)
    alpha = rgba[3]
    if alpha.max() < 0.5:
        raise InputError(f"{path}: its alpha is empty (no pixel >= 0.5); {RGBA_HINT}")
    if alpha.min() >= 0.5:
        raise InputError(f"{path}: its alpha is opaque everywhere; {RGBA_HINT}, transparent around the object")
    rgba = torch.cat([rgba[:3] * alpha, alpha[None]])  # premultiplied: the object over black
    H, W = rgba.shape[1:]
    side = max(H, W)
    top, left = (side - H) // 2, (side - W) // 2
    rgba = F.pad(rgba, (left, side - W - left, top, side - H - top))
    if side > size:
        rgba = F.interpolate(rgba[None], size=(size, size), mode="area")[0]
    elif side < size:
        rgba = F.interpolate(rgba[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    return rgba.clamp(0, 1)
