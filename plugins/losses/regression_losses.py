"""Regression losses between one model output and one target of the same shape."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from toolkit_plugins.losses._keys import check_same_shape, lookup

_FIX = "set %s to one of them"


class L1Loss(nn.Module):
    """Mean absolute error between outputs[output_key] and targets[target_key], times `weight`.

    Both tensors must have the same shape (no broadcasting). Returns {"l1", "loss"}.
    """

    def __init__(self, output_key: str, target_key: str, *, weight: float = 1.0) -> None:
        super().__init__()
        self.output_key = output_key
        self.target_key = target_key
        self.weight = weight

    def extra_repr(self) -> str:
        return f"output_key={self.output_key!r}, target_key={self.target_key!r}, weight={self.weight}"

    def forward(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
        pred = lookup(
            outputs, self.output_key, loss="l1", what="model outputs", fix="set output_key to one of them"
        )
        goal = lookup(
            targets, self.target_key, loss="l1", what="targets", fix="set target_key to one of them"
        )
        check_same_shape("l1", f"output {self.output_key!r}", pred, f"target {self.target_key!r}", goal)
        value = self.weight * F.l1_loss(pred, goal.to(pred.dtype), reduction="mean")
        return {"l1": value, "loss": value}
