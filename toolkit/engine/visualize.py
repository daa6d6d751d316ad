"""Draw a model's predictions on dataset images (what `toolkit demo` shows), through `model.predict`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.utils import make_grid

from toolkit.data.letterbox import Letterbox
from toolkit.data.preview import write_preview
from toolkit.model import ToolkitModel

TILE = 256  # pixels per grid cell: drawn labels stay legible


def prediction_grid(
    model: ToolkitModel, images: list[torch.Tensor], *, score_threshold: float = 0.3
) -> torch.Tensor:
    """uint8 grid: each original uint8 image [3,H,W] with its results drawn by the task."""
    results = model.predict(images, score_threshold=score_threshold)
    tiles = []
    for image, result in zip(images, results, strict=True):
        drawn = model.task.draw(image, result, model.class_names)
        tiles.append(Letterbox((TILE, TILE), fill=255)(tv_tensors.Image(drawn)).as_subclass(torch.Tensor))
    return make_grid(torch.stack(tiles), nrow=math.ceil(math.sqrt(len(tiles))), padding=4, pad_value=255)


def save_predictions(
    model: ToolkitModel, dataset: Any, path: Path, *, count: int = 16, score_threshold: float = 0.3
) -> Path:
    """Predictions on the first `count` images of a dataset (its raw samples), as a PNG grid."""
    images = [dataset[index][0] for index in range(min(count, len(dataset)))]
    return write_preview(prediction_grid(model, images, score_threshold=score_threshold), path)
