"""The model a spec describes: a backbone feeding a head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ToolkitModel(nn.Module):
    """Backbone + head. `forward(images)` returns the head's raw outputs, `decode` its predictions."""

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        *,
        class_names: list[str],
        input_size: tuple[int, int],
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.class_names = list(class_names)
        self.input_size = tuple(input_size)

    @property
    def task(self) -> str:
        """ "detection" or "classification", as declared by the head."""
        return str(self.head.task)

    def features(self, images: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """What the head reads: the backbone's map, or all its levels when the head `uses_levels`."""
        if getattr(self.head, "uses_levels", False):
            return list(self.backbone.forward_levels(images))
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(self.features(images))

    def decode(self, outputs: dict[str, torch.Tensor]) -> dict[str, Any]:
        return self.head.decode(outputs)

    @torch.inference_mode()
    def predict(self, images: torch.Tensor) -> dict[str, Any]:
        """Decoded predictions for a batch of normalized images [N,3,H,W]."""
        return self.decode(self(images))
