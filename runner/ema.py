"""An exponential moving average of a task's weights, used in place of the raw weights for evaluation.

With a constant learning rate the raw weights of a long run keep moving around a good region; their
average over the last few hundred steps sits nearer its centre (Polyak & Juditsky 1992; the EMA of
weights kept by, e.g., timm and TensorFlow's ``ExponentialMovingAverage``). The optimiser keeps
training the raw weights; evaluation, visuals and the saved artifacts see the average.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class WeightAverage:
    """EMA of every floating-point tensor of ``module.state_dict()`` (parameters and buffers such as
    BatchNorm's running statistics); other tensors (counters) are copied.

    After update n (1-based) the average is ``a = d_n a + (1 - d_n) w`` with
    ``d_n = min(decay, (1 + n) / (10 + n))``: the warm-up of TensorFlow's ``ExponentialMovingAverage``,
    so that short runs are not dominated by the initial weights.

    Args:
        module: the model whose weights are averaged (a :class:`runner.task.Task`).
        decay: in (0, 1); the average spans about ``1 / (1 - decay)`` steps.
    """

    def __init__(self, module: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.module, self.decay = module, float(decay)
        self.updates = 0
        self.shadow: dict[str, Tensor] = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self._floating = [k for k, v in self.shadow.items() if v.dtype.is_floating_point]  # averaged; others copied
        self._counters = [k for k, v in self.shadow.items() if not v.dtype.is_floating_point]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the module's current weights into the average (call after each optimiser step)."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        live = self.module.state_dict()
        torch._foreach_lerp_([self.shadow[k] for k in self._floating], [live[k] for k in self._floating], 1.0 - d)
        for k in self._counters:
            self.shadow[k].copy_(live[k])

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the module holds the averaged weights; the raw ones come back afterwards."""
        raw = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        self.module.load_state_dict(self.shadow)
        try:
            yield
        finally:
            self.module.load_state_dict(raw)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)
