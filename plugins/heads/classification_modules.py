"""Image classification head: global average pooling -> dropout -> linear."""

from __future__ import annotations

import torch
from torch import nn

from toolkit.errors import ToolkitError


class ClassificationTargetEncoder:
    """`encoder(label) -> {"label": int64 scalar tensor}`; label must be in [0, num_classes).

    Accepts an int or a one-element tensor; plain attributes only, so it pickles into workers.
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = int(num_classes)

    def __repr__(self) -> str:
        return f"ClassificationTargetEncoder(num_classes={self.num_classes})"

    def __call__(self, label: int | torch.Tensor) -> dict[str, torch.Tensor]:
        if isinstance(label, torch.Tensor):
            if label.numel() != 1 or label.is_floating_point() or label.is_complex():
                raise ValueError(
                    f"ClassificationTargetEncoder: label must be one integer, got a "
                    f"{label.dtype} tensor of shape {tuple(label.shape)}"
                )
            value = int(label.reshape(()).item())
        elif isinstance(label, int) and not isinstance(label, bool):
            value = label
        else:
            raise ValueError(f"ClassificationTargetEncoder: label must be an int, got {label!r}")
        if not 0 <= value < self.num_classes:
            raise ValueError(
                f"ClassificationTargetEncoder: label {value} is outside [0, {self.num_classes}); "
                "check the dataset's class mapping"
            )
        return {"label": torch.tensor(value, dtype=torch.int64)}


class ClassificationHead(nn.Module):
    """`forward(features[N, in_channels, h, w]) -> {"logits": [N, num_classes]}`.

    `decode(outputs) -> {"probs": softmax [N, num_classes], "labels": argmax int64 [N]}`.
    `stride` is accepted for the head interface and unused (the pooling is global). `pooling`:
    "avg" (global average, the ResNet classifier) or "max" (global max: suits presence of a small
    object anywhere in the image, as in the hornet example).
    `target_encoder(input_size)` returns a `ClassificationTargetEncoder` for this head.
    """

    task = "classification"
    default_loss: dict = {"type": "cross_entropy"}  # train.loss when the spec sets none

    def __init__(
        self, in_channels: int, stride: int, num_classes: int, *, dropout: float = 0.0, pooling: str = "avg"
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.stride = stride
        self.num_classes = num_classes
        self.out_channels = num_classes
        if pooling not in ("avg", "max"):
            raise ToolkitError(f"classification head: pooling must be 'avg' or 'max', got {pooling!r}")
        self.pooling = pooling
        self.pool = nn.AdaptiveAvgPool2d(1) if pooling == "avg" else nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def target_encoder(self, input_size: tuple[int, int]) -> ClassificationTargetEncoder:
        """The training-target encoder; `input_size` is accepted for the head interface and unused."""
        return ClassificationTargetEncoder(self.num_classes)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.flatten(self.pool(features))
        return {"logits": self.fc(self.dropout(x))}

    def decode(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Class probabilities and the most likely class of each image."""
        logits = outputs["logits"]
        return {"probs": logits.softmax(dim=1), "labels": logits.argmax(dim=1)}
