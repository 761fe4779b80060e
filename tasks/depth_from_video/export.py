"""``dwx export RUN_DIR --format onnx``: a trained depth network as an ONNX model, checked against ONNX Runtime.

The exported graph is :class:`~tasks.depth_from_video.predict.DepthModel`: input ``image`` (B, 3, H, W) RGB in
[0, 1] at the run's training size (B free), output ``depth`` (B, 1, H, W) in the network's monocular scale
[scene units], the first (full-resolution) scale of the network. torch's ``torch.export``-based exporter writes it
(it needs ``onnx`` and ``onnxscript``); the check runs the file in ONNX Runtime on frames (the user's, or a fixed
random batch) and compares with torch. Both come with the ``onnx`` extra.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import Tensor

from runner.errors import InputError
from tasks.depth_from_video.data import read_frames_at
from tasks.depth_from_video.predict import load_depth_model

TOLERANCE = 1e-4  # largest |ONNX Runtime - torch| depth difference accepted [scene units]


def export_onnx(run_dir: Path, out: Path, frames_path: Path | None = None) -> float:
    """Write ``run_dir``'s depth model to ``out`` (.onnx) and check it; returns the largest depth difference.

    Args:
        run_dir: a finished depth_from_video run (``.hydra/config.yaml`` and ``artifacts/weights.pt``).
        out: the ONNX file to write; an existing file is an error.
        frames_path: frames or a video to check the export on (resized to the training size); None checks it on
            a fixed random batch of 2.
    Raises:
        InputError: the file exists, the packages are missing, or ONNX Runtime differs from torch by more
            than :data:`TOLERANCE` (the file is then removed).
    """
    if out.exists():
        raise InputError(f"dwx export: {out} already exists; choose a new file (nothing was written)")
    try:
        import onnxruntime
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError as e:
        raise InputError(f"dwx export --format onnx needs onnx, onnxscript and onnxruntime: pip install -e "
                         f"'.[onnx]' ({e})") from e
    model, (H, W) = load_depth_model(run_dir)
    images = _check_frames(frames_path, (H, W))
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(0))  # 2: a batch of 1 would fix B
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed": not ours
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecations inside torch.export
        torch.onnx.export(model, (example,), out, input_names=["image"], output_names=["depth"], dynamo=True,
                          dynamic_shapes={"image": {0: torch.export.Dim.DYNAMIC}}, verbose=False)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (depth_onnx,) = session.run(None, {"image": images.numpy()})
    with torch.no_grad():
        difference = float((torch.from_numpy(depth_onnx) - model(images)).abs().max())
    if not difference <= TOLERANCE:
        out.unlink()
        raise InputError(f"dwx export: ONNX Runtime differs from torch by {difference:.2e} > {TOLERANCE:g} on the "
                         f"check frames; nothing was kept")
    return difference


def _check_frames(path: Path | None, size: tuple[int, int]) -> Tensor:
    """(N, 3, H, W) frames in [0, 1] to compare ONNX Runtime with torch on: the user's, or 2 seeded random ones."""
    if path is not None:
        frames, _ = read_frames_at(path, size)
        return frames[:8]
    return torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
