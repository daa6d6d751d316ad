"""`toolkit build`: parameters per part (trainable vs frozen) and output shapes at the input size."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from toolkit.model import ToolkitModel
from toolkit.table import format_table


@dataclass(frozen=True)
class PartSummary:
    """Parameter counts and output shapes of one part of a model."""

    part: str
    kind: str
    parameters: int
    trainable: int
    outputs: dict[str, list[int]]

    @property
    def frozen(self) -> int:
        return self.parameters - self.trainable


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(all, trainable) parameter counts."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return total, trainable


def summarize(model: ToolkitModel, backbone_name: str, head_name: str) -> list[PartSummary]:
    """Run one zero image of the model's input size through it (eval mode) and count parameters."""
    height, width = model.input_size
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            features = model.features(model.normalize(torch.zeros(1, 3, height, width)))
            outputs = model.head(features)
        if isinstance(features, torch.Tensor):
            feature_shapes = {"features": list(features.shape)}
        else:  # a head reading every level: show each
            feature_shapes = {f"level {index}": list(level.shape) for index, level in enumerate(features)}
    finally:
        model.train(was_training)
    parts = []
    for part, name, module, shapes in (
        ("backbone", backbone_name, model.backbone, feature_shapes),
        ("head", head_name, model.head, {key: list(value.shape) for key, value in outputs.items()}),
    ):
        total, trainable = count_parameters(module)
        parts.append(PartSummary(part, name, total, trainable, shapes))
    return parts


def format_model_summary(parts: list[PartSummary], input_size: tuple[int, int]) -> str:
    """The `toolkit build` table: each part's parameters (trainable, frozen) and output shapes."""
    rows = []
    for p in parts:
        shapes = ", ".join(f"{key} {shape}" for key, shape in p.outputs.items())
        rows.append([p.part, p.kind, f"{p.parameters:,}", f"{p.trainable:,}", f"{p.frozen:,}", shapes])
    total = sum(p.parameters for p in parts)
    trainable = sum(p.trainable for p in parts)
    rows.append(["total", "", f"{total:,}", f"{trainable:,}", f"{total - trainable:,}", ""])
    headers = [
        "part",
        "type",
        "parameters",
        "trainable",
        "frozen",
        f"outputs at 1x3x{input_size[0]}x{input_size[1]}",
    ]
    return format_table(headers, rows)
