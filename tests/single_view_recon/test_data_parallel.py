"""mode=learn data-parallel: each rank's share of the global batch, and averaged gradients equal to one process's.

The ranks are simulated in one process (``task.rank``, ``task.world_size``): LearnRecon's loss needs no
collective, so the loop's gradient average over the ranks is the mean of these per-share gradients.
tests/sweeps/test_distributed.py runs the real thing with torchrun.
"""

from __future__ import annotations

import pytest
import torch

from runner.errors import ConfigError


def _grads(task, step):
    task.zero_grad(set_to_none=True)
    terms = task.loss(step)
    sum(terms.values()).backward()
    return {k: v.item() for k, v in terms.items()}, {n: p.grad.clone() for n, p in task.named_parameters()}


def test_the_ranks_shares_make_up_the_global_batch(task):
    whole = task.batch(5)
    shares = []
    for rank in range(2):
        task.rank, task.world_size = rank, 2
        shares.append(task.batch(5))
    task.rank, task.world_size = 0, 1
    for i in range(3):
        assert [len(s[i]) for s in shares] == [4, 4]
        assert torch.equal(torch.cat([s[i] for s in shares]), whole[i])
    assert (whole[1] != whole[2]).all()  # two different views per object


def test_mean_of_the_ranks_gradients_is_the_gradient_of_the_global_batch(task):
    terms, grads = _grads(task, 5)
    per_rank = []
    for rank in range(2):
        task.rank, task.world_size = rank, 2
        per_rank.append(_grads(task, 5))
    task.rank, task.world_size = 0, 1
    for name in terms:  # every term is a mean over objects: the ranks' mean is the global batch's
        assert (per_rank[0][0][name] + per_rank[1][0][name]) / 2 == pytest.approx(terms[name], rel=1e-5)
    for name, grad in grads.items():  # float rounding only: measured <= 3e-6 of each tensor's largest entry
        mean = (per_rank[0][1][name] + per_rank[1][1][name]) / 2
        assert (mean - grad).abs().max() <= 1e-5 * grad.abs().max(), name


def test_a_batch_that_does_not_split_is_a_config_error(task):
    task.rank, task.world_size = 0, 3
    try:
        with pytest.raises(ConfigError, match="global batch of 8 does not split evenly over 3 processes"):
            task.loss(0)
    finally:
        task.rank, task.world_size = 0, 1
