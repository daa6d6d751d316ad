"""`toolkit data preview`: a grid of augmented samples with their boxes and class names."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torchvision.transforms import v2
from torchvision.utils import draw_bounding_boxes, make_grid

from toolkit.data.loader import build_dataset, build_transforms
from toolkit.data.pipeline import ProcessedDataset
from toolkit.plugins import PluginManager
from toolkit.spec import Spec

PALETTE = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6"]


def to_uint8(image: torch.Tensor, transform: v2.Compose) -> torch.Tensor:
    """Undo the pipeline's Normalize steps (last first) and scale [0,1] floats to uint8."""
    image = image.detach().float().clone()
    for step in reversed(list(transform.transforms)):
        if isinstance(step, v2.Normalize):
            mean = torch.tensor(step.mean).view(-1, 1, 1)
            std = torch.tensor(step.std).view(-1, 1, 1)
            image = image * std + mean
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def preview_grid(
    spec: Spec, *, split: str = "train", count: int = 16, epoch: int = 0, plugins: PluginManager | None = None
) -> torch.Tensor:
    """uint8 [3,H,W] grid of the first `count` samples of `data.<split>` as the model sees them."""
    dataset = build_dataset(spec, split, plugins=plugins)
    detection = dataset.task == "detection"
    transform = build_transforms(spec, train=split == "train", detection=detection, plugins=plugins)
    processed = ProcessedDataset(
        dataset, transform, encoder=lambda *_: {}, input_size=spec.model.input_size, seed=spec.data.seed
    )
    names = list(dataset.class_names)
    tiles = []
    for index in range(min(count, len(dataset))):
        image, target = dataset[index]
        image, target = processed.augment(image, target, index=index, epoch=epoch)
        tile = to_uint8(image, transform)
        height, width = tile.shape[-2:]
        if detection:
            boxes = target["boxes"].as_subclass(torch.Tensor).float()
            labels = [names[int(label)] for label in target["labels"]]
            colors = [PALETTE[int(label) % len(PALETTE)] for label in target["labels"]]
        else:
            label = int(target["label"])
            boxes = torch.tensor([[0.0, 0.0, width - 1.0, height - 1.0]])
            labels, colors = [names[label]], [PALETTE[label % len(PALETTE)]]
        if len(boxes):
            tile = draw_bounding_boxes(tile, boxes, labels=labels, colors=colors, width=2)
        tiles.append(tile)
    if not tiles:
        raise ValueError(f"data.{split} is empty: nothing to preview")
    return make_grid(torch.stack(tiles), nrow=math.ceil(math.sqrt(len(tiles))), padding=4, pad_value=255)


def write_preview(grid: torch.Tensor, path: str | Path) -> Path:
    """Write the grid as a PNG (parent folders created)."""
    from torchvision.io import write_png

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(grid, str(path))
    return path
