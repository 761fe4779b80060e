"""Fixtures of the single_view_recon tests: a tiny learned task (experiment=recon_tiny_learn)."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from tests.conftest import compose_config


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("DWX_CACHE", str(tmp_path_factory.mktemp("cache")))
    torch.manual_seed(0)
    # as `dwx run experiment=recon_tiny_learn` builds it
    task = instantiate(compose_config(["experiment=recon_tiny_learn"]).task, _convert_="all")
    task.setup(torch.device("cpu"))
    # a few steps so that the decoder's zero-initialised last layer no longer returns the bare template
    opt = torch.optim.Adam(task.parameters(), lr=1e-3)
    for step in range(3):
        opt.zero_grad()
        sum(task.loss(step).values()).backward()
        opt.step()
    yield task
    mp.undo()
