"""Image classification head: global average pooling -> dropout -> linear."""

from __future__ import annotations

import torch
from torch import nn


class ClassificationHead(nn.Module):
    """`forward(features[N, in_channels, h, w]) -> {"logits": [N, num_classes]}`.

    `decode(outputs) -> {"scores": softmax [N, num_classes], "labels": argmax int64 [N]}`.
    `stride` is accepted for the head interface and unused (the pooling is global).
    """

    task = "classification"

    def __init__(self, in_channels: int, stride: int, num_classes: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.stride = stride
        self.num_classes = num_classes
        self.out_channels = num_classes
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.flatten(self.pool(features))
        return {"logits": self.fc(self.dropout(x))}

    def decode(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Class probabilities and the most likely class of each image."""
        logits = outputs["logits"]
        return {"scores": logits.softmax(dim=1), "labels": logits.argmax(dim=1)}
