"""The weight average (runner/ema.py) by hand, and in the loop: evaluation sees it, training does not."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from runner.ema import WeightAverage
from runner.errors import ConfigError
from tests.runner.test_loop import make_loop


def test_average_follows_the_warm_up_formula_by_hand():
    m = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(0.0)
    ema = WeightAverage(m, decay=0.2)
    expected = 0.0
    for n, w in enumerate([1.0, 2.0, 4.0], start=1):
        with torch.no_grad():
            m.weight.fill_(w)
        ema.update()
        d = min(0.2, (1 + n) / (10 + n))  # the warm-up's 2/11 first, then the cap 0.2
        expected = d * expected + (1 - d) * w
        assert ema.shadow["weight"].item() == pytest.approx(expected)


def test_applied_swaps_in_the_average_and_restores_the_raw_weights():
    m = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = WeightAverage(m, decay=0.9)
    raw_before = {k: v.clone() for k, v in m.state_dict().items()}
    m.train()
    m(torch.randn(8, 2) * 3 + 1)  # moves BatchNorm's running statistics and its batch counter
    with torch.no_grad():
        m[0].weight.add_(1.0)
    ema.update()
    trained = {k: v.clone() for k, v in m.state_dict().items()}
    with ema.applied():
        inside = m.state_dict()
        d = 2 / 11  # the warm-up decay of the first update
        torch.testing.assert_close(inside["0.weight"], d * raw_before["0.weight"] + (1 - d) * trained["0.weight"])
        torch.testing.assert_close(
            inside["1.running_mean"], d * raw_before["1.running_mean"] + (1 - d) * trained["1.running_mean"]
        )
        assert inside["1.num_batches_tracked"].item() == 1  # counters are copied, not averaged
    for k, v in m.state_dict().items():
        torch.testing.assert_close(v, trained[k])


def test_bad_decay_is_refused():
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\)"):
        WeightAverage(nn.Linear(1, 1), decay=1.0)


def test_loop_evaluates_the_average_and_trains_the_raw_weights():
    loop = make_loop(steps=40, ema_decay=0.9, eval_every=40)
    result = loop.run()
    task = loop.task
    raw = task.evaluate()["rot_err_deg"]
    with loop.evaluated_weights():
        averaged = task.evaluate()["rot_err_deg"]
        averaged_rot = task.rot.detach().clone()
    assert result.metrics["rot_err_deg"] == averaged != raw  # the reported metric is the average's
    assert not torch.equal(averaged_rot, task.rot.detach())  # the optimiser's weights are untouched
    assert loop.ema.updates == 40


def test_loop_without_average_evaluates_the_trained_weights():
    loop = make_loop(steps=20, eval_every=20)
    result = loop.run()
    assert loop.ema is None and result.metrics["rot_err_deg"] == loop.task.evaluate()["rot_err_deg"]


def test_resuming_a_checkpoint_without_average_says_how():
    state = make_loop(steps=2).state_dict()
    with pytest.raises(ConfigError, match="no weight average.*loop.ema_decay=null"):
        make_loop(steps=2, ema_decay=0.9).load_state_dict(state)
