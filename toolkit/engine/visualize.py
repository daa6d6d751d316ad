"""Draw a model's predictions on dataset images (what `toolkit demo` shows and what every evaluation
with a folder writes as `val_predictions.png`), through `model.predict` and the task's drawing."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.utils import make_grid

from toolkit.data.letterbox import LETTERBOX_KEY, Letterbox
from toolkit.data.preview import write_preview
from toolkit.model import ToolkitModel

TILE = 256  # pixels per grid cell: drawn labels stay legible
BAND = 22  # pixels of the caption band above each tile of an evaluation grid


def prediction_grid(
    model: ToolkitModel, images: list[torch.Tensor], *, score_threshold: float = 0.3
) -> torch.Tensor:
    """uint8 grid: each original uint8 image [3,H,W] with its results drawn by the task."""
    results = model.predict(images, score_threshold=score_threshold)
    tiles = [_tile(_draw(model, image, result)) for image, result in zip(images, results, strict=True)]
    return make_grid(torch.stack(tiles), nrow=math.ceil(math.sqrt(len(tiles))), padding=4, pad_value=255)


class EvaluatedSamples:
    """The first `count` evaluated images' decoded outputs (CPU, one row each) and meta, kept
    during an evaluation so the grid shows exactly what was scored, without a second forward pass."""

    def __init__(self, count: int = 16) -> None:
        self.count = count
        self.decoded: list[dict[str, torch.Tensor]] = []
        self.meta: list[dict[str, Any]] = []

    def add(self, decoded: Mapping[str, torch.Tensor], meta: Sequence[Mapping[str, Any]]) -> None:
        """Keep the rows of one batch (`head.decode` outputs, batch first) until `count` are kept."""
        for row, record in enumerate(meta[: max(0, self.count - len(self.meta))]):
            self.decoded.append({key: value[row : row + 1].detach().cpu() for key, value in decoded.items()})
            self.meta.append(dict(record))


def truth_and_prediction_grid(
    model: ToolkitModel,
    samples: Sequence[tuple[int, torch.Tensor, Any]],
    decoded: Mapping[str, torch.Tensor],
    meta: Sequence[Mapping[str, Any]],
    *,
    score_threshold: float = 0.3,
) -> torch.Tensor:
    """uint8 grid of `(index, uint8 image [3,H,W], dataset target)` samples, each as a pair of
    tiles: the ground truth (`task.draw_target`) captioned "INDEX truth", then the results at or
    above `score_threshold` (`task.draw`) captioned "INDEX predicted". `decoded` (batch first)
    and `meta` are the samples' decoded outputs and evaluation meta (`orig_size`, `letterbox`).

    Each image is drawn resized so that its longer side is TILE pixels, whatever its own size, so
    labels are legible on small and large images alike: the task's `results` map the decoded
    outputs to that frame (meta naming it as the original image), and the target is resized with
    the image (a box-aware `v2.Resize`).
    """
    task, names = model.task, model.class_names
    frames = [_frame(image) for _, image, _ in samples]
    framed = []
    for record, (factor, size) in zip(meta, frames, strict=True):
        record = {**record, "orig_size": torch.tensor(size)}
        if record.get(LETTERBOX_KEY) is not None:  # x = (x' - pad) / scale, now in the frame
            letterbox = torch.as_tensor(record[LETTERBOX_KEY], dtype=torch.float64).cpu()
            record[LETTERBOX_KEY] = letterbox / torch.tensor([factor, 1.0, 1.0], dtype=torch.float64)
        framed.append(record)
    results = model.results(decoded, framed, score_threshold)
    tiles = []
    for (index, image, target), (_, size), result in zip(samples, frames, results, strict=True):
        prepared = task.prepare_target(target)
        resized, prepared = v2.Resize(list(size), antialias=True)(tv_tensors.Image(image), prepared)
        resized = resized.as_subclass(torch.Tensor)
        truth = task.draw_target(resized, prepared, names)
        tiles.append(_captioned(_tile(truth), f"{index} truth"))
        tiles.append(_captioned(_tile(_draw(model, resized, result)), f"{index} predicted"))
    columns = 2 * math.ceil(math.sqrt(len(samples)))
    return make_grid(torch.stack(tiles), nrow=columns, padding=4, pad_value=255)


def save_predictions(
    model: ToolkitModel, dataset: Any, path: Path, *, count: int = 16, score_threshold: float = 0.3
) -> Path:
    """Predictions on the first `count` images of a dataset (its raw samples), as a PNG grid."""
    images = [dataset[index][0] for index in range(min(count, len(dataset)))]
    return write_preview(prediction_grid(model, images, score_threshold=score_threshold), path)


def save_evaluation_grid(
    model: ToolkitModel, dataset: Any, kept: EvaluatedSamples, path: Path, *, score_threshold: float = 0.3
) -> Path | None:
    """`truth_and_prediction_grid` of the kept evaluated samples, their images and targets read
    again from the raw dataset (`meta["index"]`), as a PNG; None when nothing was kept."""
    if not kept.meta:
        return None
    samples = []
    for record in kept.meta:
        index = int(record["index"])
        image, target = dataset[index]
        samples.append((index, torch.as_tensor(image).as_subclass(torch.Tensor), target))
    decoded = {key: torch.cat([row[key] for row in kept.decoded]) for key in kept.decoded[0]}
    grid = truth_and_prediction_grid(model, samples, decoded, kept.meta, score_threshold=score_threshold)
    return write_preview(grid, path, compress_level=3)  # written at every evaluation: fast


def _frame(image: torch.Tensor) -> tuple[float, tuple[int, int]]:
    """The factor that brings the longer side of `image` to TILE pixels, and the (H, W) it gives."""
    height, width = (int(v) for v in image.shape[-2:])
    factor = TILE / max(height, width)
    return factor, (max(1, round(height * factor)), max(1, round(width * factor)))


def _draw(model: ToolkitModel, image: torch.Tensor, result: Any) -> torch.Tensor:
    return model.task.draw(image, result, model.class_names)


def _tile(drawn: torch.Tensor) -> torch.Tensor:
    """A drawn uint8 image letterboxed to TILE x TILE on white (only padded when its longer side
    is TILE already)."""
    height, width = (int(v) for v in drawn.shape[-2:])
    if max(height, width) != TILE:
        return Letterbox((TILE, TILE), fill=255)(tv_tensors.Image(drawn)).as_subclass(torch.Tensor)
    tile = torch.full((3, TILE, TILE), 255, dtype=torch.uint8)
    top, left = (TILE - height) // 2, (TILE - width) // 2
    tile[:, top : top + height, left : left + width] = drawn
    return tile


def _captioned(tile: torch.Tensor, text: str) -> torch.Tensor:
    """`tile` [3,T,W] under a white band of BAND pixels holding `text` in black."""
    from PIL import Image, ImageDraw

    band = Image.new("RGB", (int(tile.shape[-1]), BAND), "white")
    ImageDraw.Draw(band).text((4, 2), text, fill="black", font=_caption_font())
    pixels = torch.from_numpy(np.asarray(band).copy()).permute(2, 0, 1)
    return torch.cat([pixels, tile], dim=1)


@functools.lru_cache(maxsize=1)
def _caption_font() -> Any:
    """Pillow's default font at the band's size (its bitmap font on an old Pillow or without FreeType)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=BAND - 6)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()
