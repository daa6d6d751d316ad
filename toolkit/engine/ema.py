"""`train.ema`: an exponential moving average of a model's weights (torch.optim.swa_utils.AveragedModel).

After n updates the average moves towards the weights by 1 - d_n, d_n = decay * (1 - exp(-n / ramp)):
early on (n << ramp) it follows the weights closely, later it averages over about 1 / (1 - decay)
steps. Buffers (BatchNorm statistics) are averaged too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from toolkit.spec.train import EmaSpec


def ema_decay(updates: int, decay: float, ramp_steps: float) -> float:
    """The decay of the `updates`-th update (1-based)."""
    if ramp_steps <= 0:
        return decay
    return decay * (1.0 - math.exp(-updates / ramp_steps))


class WeightsAverage:
    """The moving average of `model`'s parameters and buffers; `module` is the averaged model."""

    def __init__(self, model: nn.Module, config: EmaSpec) -> None:
        self.config = config

        def average(averaged: list[torch.Tensor], current: list[torch.Tensor], count: Any) -> None:
            weight = 1.0 - ema_decay(int(count) + 1, config.decay, config.ramp_steps)
            floating = [(a, c) for a, c in zip(averaged, current, strict=True) if a.is_floating_point()]
            if floating:
                torch._foreach_lerp_([a for a, _ in floating], [c for _, c in floating], weight)
            for a, c in zip(averaged, current, strict=True):  # counters such as num_batches_tracked
                if not a.is_floating_point():
                    a.copy_(c)

        self.averaged = AveragedModel(model, multi_avg_fn=average, use_buffers=True)
        self.averaged.requires_grad_(False)

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    @property
    def updates(self) -> int:
        return int(self.averaged.n_averaged)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average (after an optimizer step)."""
        self.averaged.update_parameters(model)

    def state(self) -> dict[str, Any]:
        """The average's weights (a model state dict) and its update count."""
        return {"model": self.module.state_dict(), "updates": self.updates}

    def load(self, weights: Mapping[str, Any], updates: int) -> None:
        self.module.load_state_dict(weights)
        self.averaged.n_averaged.fill_(updates)
