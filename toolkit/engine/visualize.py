"""Draw a model's predictions on dataset images (what `toolkit demo` shows and what every evaluation
with a folder writes as `val_predictions.png`), through `model.predict` and the task's drawing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.utils import make_grid

from toolkit.contracts import call_component
from toolkit.data.letterbox import LETTERBOX_KEY, Letterbox
from toolkit.data.preview import write_preview
from toolkit.errors import BadSampleError
from toolkit.inference import eval_mode, predict_batch, preprocess
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


def truth_and_prediction_grid(
    model: ToolkitModel,
    samples: Sequence[tuple[int, torch.Tensor, Any]],
    *,
    score_threshold: float = 0.3,
) -> torch.Tensor:
    """uint8 grid of `(index, uint8 image [3,H,W], dataset target)` samples, each as a pair of
    tiles: the ground truth (`task.draw_target`) captioned "INDEX truth", then the results at or
    above `score_threshold` (`task.draw`) captioned "INDEX predicted".

    Each image is drawn resized so that its longer side is TILE pixels, whatever its own size, so
    labels are legible on small and large images alike. The results are those of evaluation (the
    model's preprocessing of the image itself); only the frame they are mapped back to is the
    resized one (the task's `results` with meta naming that frame). The target is resized with
    the image (a box-aware `v2.Resize`).
    """
    task, names = model.task, model.class_names
    images = [image for _, image, _ in samples]
    batch, meta = preprocess(images, model.input_size)
    frames = [_frame(image) for image in images]
    for record, (factor, size) in zip(meta, frames, strict=True):  # results in the resized frame
        record["orig_size"] = torch.tensor(size)
        record[LETTERBOX_KEY] = record[LETTERBOX_KEY] / torch.tensor([factor, 1.0, 1.0])
    with eval_mode(model), torch.inference_mode():
        results = predict_batch(
            model, batch.to(model.input_mean.device), meta, score_threshold=score_threshold
        )
    tiles = []
    for (index, image, target), (_, size), result in zip(samples, frames, results, strict=True):
        prepared = call_component(
            task, f"preparing the target of sample {index}", task.prepare_target, target
        )
        resized, prepared = v2.Resize(list(size), antialias=True)(tv_tensors.Image(image), prepared)
        resized = resized.as_subclass(torch.Tensor)
        truth = call_component(task, "drawing a target", task.draw_target, resized, prepared, names)
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


def save_truth_and_predictions(
    model: ToolkitModel, dataset: Any, path: Path, *, count: int = 16, score_threshold: float = 0.3
) -> Path | None:
    """`truth_and_prediction_grid` of the first `count` readable samples of a raw dataset
    (`(uint8 image, target)` items; bad samples are passed over) as a PNG; None when there are none."""
    samples = []
    for index in range(len(dataset)):
        if len(samples) == count:
            break
        try:
            image, target = dataset[index]
        except BadSampleError:
            continue
        samples.append((index, torch.as_tensor(image).as_subclass(torch.Tensor), target))
    if not samples:
        return None
    grid = truth_and_prediction_grid(model, samples, score_threshold=score_threshold)
    return _write_png(grid, path)


def _frame(image: torch.Tensor) -> tuple[float, tuple[int, int]]:
    """The factor that brings the longer side of `image` to TILE pixels, and the (H, W) it gives."""
    height, width = (int(v) for v in image.shape[-2:])
    factor = TILE / max(height, width)
    return factor, (max(1, round(height * factor)), max(1, round(width * factor)))


def _draw(model: ToolkitModel, image: torch.Tensor, result: Any) -> torch.Tensor:
    return call_component(model.task, "drawing a result", model.task.draw, image, result, model.class_names)


def _tile(drawn: torch.Tensor) -> torch.Tensor:
    """A drawn uint8 image letterboxed to TILE x TILE on white."""
    return Letterbox((TILE, TILE), fill=255)(tv_tensors.Image(drawn)).as_subclass(torch.Tensor)


def _captioned(tile: torch.Tensor, text: str) -> torch.Tensor:
    """`tile` [3,T,W] under a white band of BAND pixels holding `text` in black."""
    from PIL import Image, ImageDraw, ImageFont

    band = Image.new("RGB", (int(tile.shape[-1]), BAND), "white")
    try:
        font: Any = ImageFont.load_default(size=BAND - 6)
    except (TypeError, OSError, ImportError):  # an older Pillow or one without FreeType
        font = ImageFont.load_default()
    ImageDraw.Draw(band).text((4, 2), text, fill="black", font=font)
    pixels = torch.from_numpy(np.asarray(band).copy()).permute(2, 0, 1)
    return torch.cat([pixels, tile], dim=1)


def _write_png(grid: torch.Tensor, path: Path) -> Path:
    """A uint8 [3,H,W] image as a PNG, compressed quickly (written at every evaluation)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = grid.detach().cpu().permute(1, 2, 0).contiguous().numpy()
    Image.fromarray(pixels).save(path, format="PNG", compress_level=3)
    return path
