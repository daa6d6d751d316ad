"""Sliced inference: a large image cut into overlapping tiles, run in batches, merged back.

`tile_grid` places windows of the tile size so that they cover the image with at least the asked
overlap, the last row and column flush with the image's edges (an image smaller than a tile is one
window, the whole image). `predict_tiled` streams one image's windows `tiling.batch` at a time:
each window is a view of the image until its batch is letterboxed to the model's input size, so
memory holds the image, one batch and the detections, never all tiles. Each window's results
(the task's format, window pixels) and the window's origin go to the task's `merge_tiles`
(`contracts.MergesTiles`), which shifts them to image pixels and merges what tile borders cut or
doubled. `ToolkitModel.predict` and `OnnxModel.predict` both tile here, with `run` their forward
and decode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from pydantic import ValidationError

from toolkit.contracts import MergesTiles, Task
from toolkit.errors import ToolkitError, validation_problems
from toolkit.inference import preprocess
from toolkit.spec.models import TileSpec

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels


def as_tiling(tile: TileSpec | Mapping[str, Any] | int | None) -> TileSpec | None:
    """`tile` as a TileSpec: None (no tiling), a tile side in pixels, a mapping of TileSpec fields, or
    a TileSpec; a ToolkitError names what is wrong."""
    if tile is None or isinstance(tile, TileSpec):
        return tile
    try:
        if isinstance(tile, bool):
            raise ToolkitError(
                "tile must be a tile size in pixels, a mapping of tile options or None, not a bool"
            )
        if isinstance(tile, int):
            return TileSpec(size=tile)
        if isinstance(tile, Mapping):
            return TileSpec(**tile)
    except ValidationError as exc:
        raise ToolkitError(f"tile: {validation_problems(exc)}") from None
    raise ToolkitError(f"tile must be a tile size in pixels, a mapping of tile options or None, not {tile!r}")


def tile_origins(length: int, tile: int, overlap: float) -> list[int]:
    """Starts of windows of `tile` pixels along a side of `length`: a step of at most
    `tile * (1 - overlap)`, spread evenly so that the last window ends at the edge."""
    if length <= tile:
        return [0]
    step = max(1.0, tile * (1.0 - overlap))
    count = 1 + -int(-(length - tile) // step)  # ceil: enough windows for the step
    span = length - tile
    return [round(index * span / (count - 1)) for index in range(count)]


def tile_grid(height: int, width: int, tile: tuple[int, int], overlap: float) -> list[Window]:
    """Windows (x0, y0, x1, y1) of `tile` (H, W) covering an image, row by row; clipped to an image
    smaller than a tile."""
    rows = tile_origins(height, tile[0], overlap)
    columns = tile_origins(width, tile[1], overlap)
    return [(x0, y0, min(x0 + tile[1], width), min(y0 + tile[0], height)) for y0 in rows for x0 in columns]


def tile_size(tiling: TileSpec, input_size: tuple[int, int]) -> tuple[int, int]:
    """The (H, W) of a tile: `tiling.size` square, or the model's input size."""
    return (tiling.size, tiling.size) if tiling.size is not None else input_size


def predict_tiled(
    image: torch.Tensor,
    run: Callable[[torch.Tensor], Mapping[str, torch.Tensor]],
    *,
    task: Task,
    input_size: tuple[int, int],
    class_names: Sequence[str],
    tiling: TileSpec,
    score_threshold: float,
    device: torch.device,
) -> dict[str, Any]:
    """One image's result in its own pixels from its tiles (and the whole image with
    `tiling.full_image`). `run(batch [N,3,H,W] in [0, 1] at the input size)` gives decoded outputs."""
    if not isinstance(task, MergesTiles):
        raise ToolkitError(
            f"sliced inference needs a task that merges tile results (toolkit.contracts.MergesTiles); "
            f"task {task.name!r} does not: predict without --tile"
        )
    height, width = image.shape[-2:]
    windows = tile_grid(height, width, tile_size(tiling, input_size), tiling.overlap)
    parts: list[Mapping[str, Any]] = []
    origins: list[tuple[int, int]] = []
    for start in range(0, len(windows), tiling.batch):
        group = windows[start : start + tiling.batch]
        crops = [image[:, y0:y1, x0:x1] for x0, y0, x1, y1 in group]
        batch, meta = preprocess(crops, input_size)
        parts += task.results(run(batch.to(device)), meta, input_size, list(class_names), score_threshold)
        origins += [(x0, y0) for x0, y0, _, _ in group]
    if tiling.full_image and len(windows) > 1:
        batch, meta = preprocess([image], input_size)
        parts += task.results(run(batch.to(device)), meta, input_size, list(class_names), score_threshold)
        origins.append((0, 0))
    return task.merge_tiles(parts, origins, method=tiling.merge, iou=tiling.iou)


def predict_images(
    images: Sequence[torch.Tensor],
    run: Callable[[torch.Tensor], Mapping[str, torch.Tensor]],
    *,
    task: Task,
    input_size: tuple[int, int],
    class_names: Sequence[str],
    score_threshold: float,
    batch_size: int,
    tiling: TileSpec | None,
    device: torch.device,
) -> list[dict[str, Any]]:
    """Each image's result in its own pixels: letterboxed whole, `batch_size` images at a time, or
    with `tiling` sliced (`predict_tiled`). `run` is the model's forward and decode; the torch model
    and the onnxruntime model both predict here."""
    if tiling is not None:
        options = {"task": task, "input_size": input_size, "class_names": class_names, "device": device}
        return [
            predict_tiled(image, run, tiling=tiling, score_threshold=score_threshold, **options)
            for image in images
        ]
    results: list[dict[str, Any]] = []
    for start in range(0, len(images), batch_size):
        batch, meta = preprocess(images[start : start + batch_size], input_size)
        results += task.results(run(batch.to(device)), meta, input_size, list(class_names), score_threshold)
    return results
