"""`toolkit data preview`: a grid of augmented samples as the model sees them, targets drawn by the task."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torchvision.utils import make_grid

from toolkit.build import Builder
from toolkit.data.pipeline import ProcessedDataset
from toolkit.spec import Spec


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """A float image in [0, 1] (or uint8) as uint8 [3,H,W]."""
    if image.dtype == torch.uint8:
        return image
    return (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)


def preview_grid(
    spec: Spec, builder: Builder, *, split: str = "train", count: int = 16, epoch: int = 0
) -> torch.Tensor:
    """uint8 [3,H,W] grid of the first `count` samples of `data.<split>` (training: augmented;
    validation: the model's preprocessing), their targets drawn by the dataset's task."""

    dataset = builder.dataset(spec, split)
    task = builder.task(dataset.task, named_by=f"data.{split} ({type(dataset).__name__})")
    transform = builder.transforms(spec, task, train=split == "train")
    processed = ProcessedDataset(
        dataset, transform, lambda *_: {}, task, input_size=spec.model.input_size, seed=spec.data.seed
    )
    names = list(dataset.class_names)
    tiles = []
    for index in range(min(count, len(dataset))):
        image, target = dataset[index]
        image, target = processed.augment(image, target, index=index, epoch=epoch)
        tiles.append(task.draw_target(to_uint8(image), target, names))
    if not tiles:
        raise ValueError(f"data.{split} is empty: nothing to preview")
    return make_grid(torch.stack(tiles), nrow=math.ceil(math.sqrt(len(tiles))), padding=4, pad_value=255)


def write_preview(grid: torch.Tensor, path: str | Path, *, compress_level: int = 6) -> Path:
    """Write a uint8 [3,H,W] image as a PNG (parent folders created), with PIL (torchvision's image
    encoding is deprecated); a lower `compress_level` (0-9) writes faster, larger files."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = grid.detach().cpu().permute(1, 2, 0).contiguous().numpy()
    Image.fromarray(pixels).save(path, format="PNG", compress_level=compress_level)
    return path
