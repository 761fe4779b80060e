"""Run a trained depth network on a new video: ``dwx predict RUN_DIR INPUT --out DIR``."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from runner.errors import InputError
from tasks.depth_from_video.data import read_frames, resize_frames
from tasks.depth_from_video.models import disp_to_depth
from tasks.depth_from_video.task import write_depth_maps


def read_run(run_dir: Path) -> tuple[DictConfig, dict]:
    """The config and the saved weights (``artifacts/weights.pt``) of a finished depth_from_video run."""
    config, weights = run_dir / ".hydra" / "config.yaml", run_dir / "artifacts" / "weights.pt"
    if not config.is_file() or not weights.is_file():
        raise InputError(
            f"{run_dir} is not a finished depth_from_video run (needs .hydra/config.yaml and artifacts/weights.pt)"
        )
    cfg = OmegaConf.load(config)
    if not str(cfg.task.get("_target_", "")).endswith("DepthFromVideo"):
        raise InputError(f"{run_dir} is a run of {cfg.task.get('_target_')}, not of task=depth_from_video")
    return cfg, torch.load(weights, map_location="cpu", weights_only=True)


def predict_video(run_dir: Path, input_path: Path, out_dir: Path, batch: int = 16) -> int:
    """Predict depth for every frame of ``input_path`` with the DepthNet trained in ``run_dir``.

    Frames are resized to the training image size; depth maps (in the network's monocular scale) are
    written to ``out_dir`` as .npy and 16-bit PNG (x1000). Returns the number of frames.
    """
    cfg, state = read_run(run_dir)
    depth_net = instantiate(cfg.task.depth_net)
    depth_net.load_state_dict(state["depth_net"])
    depth_net.eval()
    image_size = tuple(cfg.data.image_size)
    frames = resize_frames(read_frames(input_path), image_size)
    with torch.no_grad():
        disp = torch.cat([depth_net(chunk)[0] for chunk in torch.split(frames, batch)])
    depth = disp_to_depth(disp, state["min_depth"], state["max_depth"])[:, 0]
    write_depth_maps(depth, out_dir)
    return len(frames)
