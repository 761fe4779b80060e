"""``dwx export RUN_DIR --format onnx``: the depth network as ONNX, equal to torch in ONNX Runtime on any batch."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import missing_tool, run_dwx

try:
    import onnxruntime
    import onnxscript  # noqa: F401
except ImportError:
    missing_tool("onnx, onnxscript or onnxruntime is not installed (pip install -e '.[onnx]'): dwx export untested")

from tasks.depth_from_video.models import DepthNet  # noqa: E402
from tasks.depth_from_video.predict import load_depth_model  # noqa: E402

NET = {"encoder_channels": [8, 8, 16, 16, 32], "decoder_channels": [8, 8, 8, 16, 16]}
SIZE = (32, 64)


def run_folder(tmp_path: Path) -> Path:
    """A finished depth_from_video run folder: its config and a seeded untrained network's weights."""
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "artifacts").mkdir()
    cfg = {"data": {"image_size": list(SIZE)},
           "task": {"_target_": "tasks.depth_from_video.task.DepthFromVideo",
                    "depth_net": {"_target_": "tasks.depth_from_video.models.DepthNet", **NET}}}
    OmegaConf.save(OmegaConf.create(cfg), run_dir / ".hydra" / "config.yaml")
    torch.manual_seed(0)
    weights = {"depth_net": DepthNet(**NET).state_dict(), "min_depth": 0.1, "max_depth": 100.0}
    torch.save(weights, run_dir / "artifacts" / "weights.pt")
    return run_dir


@pytest.mark.slow  # the exporter traces the network (~10 s)
def test_export_agrees_with_torch_on_frames_and_any_batch(tmp_path):
    run_dir, frames = run_folder(tmp_path), tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for t in range(3):
        iio.imwrite(frames / f"{t:03d}.png", rng.integers(0, 256, (48, 96, 3), dtype=np.uint8))  # resized on read
    out = run_dwx("export", str(run_dir), "--format", "onnx", "--check", str(frames), timeout=600)
    assert out.returncode == 0, out.stderr
    onnx_file = run_dir / "artifacts" / "depth.onnx"
    assert f"wrote {onnx_file}" in out.stdout and "ONNX Runtime agrees with torch" in out.stdout
    model, size = load_depth_model(run_dir)
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"] and [o.name for o in session.get_outputs()] == ["depth"]
    for batch in (1, 4):  # the batch axis is free
        images = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(batch))
        (depth,) = session.run(None, {"image": images.numpy()})
        with torch.no_grad():
            expected = model(images)
        assert depth.shape == (batch, 1, *SIZE)
        assert np.abs(depth - expected.numpy()).max() <= 1e-4
        assert 0.1 <= depth.min() and depth.max() <= 100.0  # depth in the run's range, not disparity
    again = run_dwx("export", str(run_dir), "--out", str(onnx_file))
    assert again.returncode == 2 and again.stderr.startswith("dwx: error: dwx export:")
    assert "already exists" in again.stderr
