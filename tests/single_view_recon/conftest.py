"""Fixtures of the single_view_recon tests: a tiny learned task (experiment=recon_tiny_learn)."""

from __future__ import annotations

import pytest
import torch

from runner.render.soft_mesh import SoftMeshRenderer
from tasks.single_view_recon.task import LearnRecon


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("DWX_CACHE", str(tmp_path_factory.mktemp("cache")))
    torch.manual_seed(0)
    # experiment=recon_tiny_learn
    task = LearnRecon(
        SoftMeshRenderer(sigma=3e-3, cull_backfaces=True, shading="silhouette"),
        SoftMeshRenderer(hard=True, supersample=4),
        {"image_size": 32, "azimuth": 8},
        {"categories": ["car", "lamp"], "train": 12, "val": 2, "test": 6, "seed": 0},
        {"silhouette": 1.0, "laplacian": 0.05, "flatten": 0.5},
        batch_size=8,
        latent=64,
        template_level=2,
        num_points=1000,
    )
    task.setup(torch.device("cpu"))
    # a few steps so that the decoder's zero-initialised last layer no longer returns the bare template
    opt = torch.optim.Adam(task.parameters(), lr=1e-3)
    for step in range(3):
        opt.zero_grad()
        sum(task.loss(step).values()).backward()
        opt.step()
    yield task
    mp.undo()
