"""Draw a model's predictions on evaluation images (what `toolkit demo` shows)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torchvision.utils import draw_bounding_boxes, make_grid

from toolkit.data.loader import Batch
from toolkit.data.preview import PALETTE, to_uint8, write_preview


@torch.inference_mode()
def draw_predictions(
    model: torch.nn.Module, batch: Batch, transform: object, *, score_threshold: float = 0.3, limit: int = 16
) -> torch.Tensor:
    """uint8 grid: each image (as the model saw it) with its detections above the threshold."""
    model.eval()
    images = batch.images[:limit]
    decoded = model.decode(model(images))
    tiles = []
    for index, image in enumerate(images):
        tile = to_uint8(image, transform)
        keep = decoded["scores"][index] >= score_threshold
        boxes = decoded["boxes"][index][keep].float()
        labels = decoded["labels"][index][keep].tolist()
        scores = decoded["scores"][index][keep].tolist()
        if len(boxes):
            tile = draw_bounding_boxes(
                tile,
                boxes,
                labels=[f"{model.class_names[c]} {s:.2f}" for c, s in zip(labels, scores, strict=True)],
                colors=[PALETTE[c % len(PALETTE)] for c in labels],
                width=2,
            )
        tiles.append(tile)
    return make_grid(torch.stack(tiles), nrow=math.ceil(math.sqrt(len(tiles))), padding=4, pad_value=255)


def save_predictions(model: torch.nn.Module, loader: torch.utils.data.DataLoader, path: Path) -> Path:
    """Predictions on the first batch of `loader`, written as a PNG grid."""
    batch = next(iter(loader))
    grid = draw_predictions(model, batch, loader.dataset.transform)
    return write_preview(grid, path)
