"""Run a trained depth network on a new video: ``dwx predict RUN_DIR INPUT --out DIR`` (:func:`predict_run`, this
task's ``dwx.predictors`` entry point; the command itself is :mod:`runner.predict`).

A run folder is data, never code: its ``.hydra/config.yaml`` is read without resolving interpolations,
``task.depth_net`` may only name one of dwx's own networks (:data:`DEPTH_NETS`, by the exact ``_target_``)
and gives it keyword arguments whose names and types are checked against the constructor's signature;
nothing in the folder is instantiated. The weights are read with ``weights_only=True``.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from runner.errors import ConfigError, InputError, first_line
from runner.predict import describe, load_config, matches, plain, show
from tasks.depth_from_video.artifacts import write_depth_maps
from tasks.depth_from_video.data import check_image_size, read_frames_at
from tasks.depth_from_video.models import DepthNet, disp_to_depth

TASK_TARGET = "tasks.depth_from_video.task.DepthFromVideo"
# The networks a run folder may name as task.depth_net, by their exact _target_ (an allow-list).
DEPTH_NETS: dict[str, type[nn.Module]] = {"tasks.depth_from_video.models.DepthNet": DepthNet}


def read_run(run_dir: Path) -> tuple[DictConfig, dict]:
    """The config (unresolved) and the saved weights (``artifacts/weights.pt``) of a finished depth_from_video run."""
    config, weights = run_dir / ".hydra" / "config.yaml", run_dir / "artifacts" / "weights.pt"
    if not config.is_file() or not weights.is_file():
        raise InputError(
            f"{run_dir} is not a finished depth_from_video run (needs .hydra/config.yaml and artifacts/weights.pt)"
        )
    cfg = load_config(config)
    target = plain(cfg, "task", "_target_")
    if target != TASK_TARGET:
        raise InputError(f"{run_dir} is a run of {show(target)}, not of task=depth_from_video")
    return cfg, _load_weights(weights)


def _load_weights(path: Path) -> dict:
    """The weights a depth_from_video run saves: ``depth_net`` state and the ``min_depth``/``max_depth`` range."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which, not a pickle traceback
        raise InputError(f"{path}: cannot read weights: {first_line(e)}") from e
    if (
        not isinstance(state, dict)
        or not isinstance(state.get("depth_net"), dict)
        or not all(matches(state.get(k), float) for k in ("min_depth", "max_depth"))
    ):
        raise InputError(f"{path}: not the weights.pt of a depth_from_video run (depth_net, min_depth, max_depth)")
    return state


def build_depth_net(spec: object) -> nn.Module:
    """The network ``task.depth_net`` describes, one of :data:`DEPTH_NETS` built from checked keyword arguments.

    Raises :class:`InputError` naming the key for a ``_target_`` outside the allow-list, an argument the
    constructor does not take, or a value of the wrong type (nested configs and ``_target_`` included).
    """
    if not isinstance(spec, dict):
        raise InputError(f"task.depth_net must be a mapping with a _target_, got {show(spec)}")
    kwargs = dict(spec)
    target = kwargs.pop("_target_", None)
    if not isinstance(target, str) or target not in DEPTH_NETS:
        raise InputError(
            f"task.depth_net._target_ is {show(target)}, not one of dwx's networks ({', '.join(DEPTH_NETS)})"
        )
    cls = DEPTH_NETS[target]
    params, hints = inspect.signature(cls).parameters, typing.get_type_hints(cls.__init__)
    for key, value in kwargs.items():
        if key not in params:
            raise InputError(f"task.depth_net.{key}: {target} takes no such argument (it takes {', '.join(params)})")
        if not matches(value, hints[key]):
            raise InputError(f"task.depth_net.{key} must be {describe(hints[key])}, got {show(value)}")
    return cls(**kwargs)


def trained_size(cfg: DictConfig, state: dict) -> tuple[int, int]:
    """The (H, W) a run trained at: saved in its weights.pt, or (older runs) its config's ``data.image_size``."""
    try:
        size = check_image_size(state.get("image_size", plain(cfg, "data", "image_size")))
    except ConfigError as e:
        raise InputError(str(e)) from e
    if isinstance(size, int):
        raise InputError("artifacts/weights.pt does not say the image size the run trained at (data.image_size is "
                         f"the height {size} only)")
    return size


class DepthModel(nn.Module):
    """A trained depth network with its depth range: frames in, depth out (what ``dwx predict`` runs and
    ``dwx export`` writes).

    Args:
        depth_net: a :class:`~tasks.depth_from_video.models.DepthNet` with its trained weights.
        min_depth, max_depth: the run's depth range [scene units].
    """

    def __init__(self, depth_net: nn.Module, min_depth: float, max_depth: float):
        super().__init__()
        self.depth_net, self.min_depth, self.max_depth = depth_net, min_depth, max_depth

    def forward(self, image: Tensor) -> Tensor:
        """(B, 3, H, W) RGB in [0, 1], H and W multiples of the network's stride -> (B, 1, H, W) depth [scene
        units, the network's monocular scale]."""
        return disp_to_depth(self.depth_net(image)[0], self.min_depth, self.max_depth)


def load_depth_model(run_dir: Path) -> tuple[DepthModel, tuple[int, int]]:
    """The depth model trained in ``run_dir`` (in eval mode) and the (H, W) it was trained at."""
    cfg, state = read_run(run_dir)
    depth_net = build_depth_net(plain(cfg, "task", "depth_net"))
    try:
        depth_net.load_state_dict(state["depth_net"])
    except RuntimeError as e:  # missing, unexpected or mis-shaped tensors
        raise InputError(f"{run_dir}: artifacts/weights.pt does not fit task.depth_net: {first_line(e)}") from e
    return DepthModel(depth_net, state["min_depth"], state["max_depth"]).eval(), trained_size(cfg, state)


def predict_video(run_dir: Path, input_path: Path, out_dir: Path, batch: int = 16) -> int:
    """Predict depth for every frame of ``input_path`` with the DepthNet trained in ``run_dir``.

    Frames are resized to the training image size; depth maps (in the network's monocular scale) are
    written to ``out_dir`` as .npy and 16-bit PNG (x1000). Returns the number of frames.
    """
    model, size = load_depth_model(run_dir)
    frames, _ = read_frames_at(input_path, size)  # resized as each frame is decoded: memory ~ the training size
    with torch.no_grad():
        depth = torch.cat([model(chunk) for chunk in torch.split(frames, batch)])[:, 0]
    write_depth_maps(depth, out_dir)
    return len(frames)


def predict_run(run_dir: Path, inputs: list[Path], out_dir: Path) -> str:
    """``dwx predict`` on a depth_from_video run (the ``dwx.predictors`` entry point): depth of every frame of one
    input, a folder of frames or a video (:func:`predict_video`); returns the line the command prints."""
    if len(inputs) != 1:
        raise InputError(
            f"depth_from_video predicts one input at a time, a folder of frames or a video; got {len(inputs)} "
            f"({', '.join(show(str(p), 40) for p in inputs[:3])}{', ...' if len(inputs) > 3 else ''})"
        )
    n = predict_video(run_dir, inputs[0], out_dir)
    return f"wrote depth for {n} frames to {out_dir}"
