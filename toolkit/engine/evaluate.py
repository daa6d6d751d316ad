"""Run a model over an evaluation loader and compute its task's metrics.

The batches go through the code `model.predict` uses (`ToolkitModel.results`): decoded
outputs become per-image results in original image pixels, which the task's evaluator scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from toolkit.data.pipeline import SkippedSample, sample_image_id
from toolkit.data.split import DataSplit
from toolkit.engine.logs import Progress
from toolkit.engine.visualize import EvaluatedSamples, save_evaluation_grid
from toolkit.inference import eval_mode
from toolkit.model import ToolkitModel
from toolkit.spec.models import TileSpec

#: File name of the ground-truth / prediction grid an evaluation with a folder writes.
PREDICTIONS_FILE = "val_predictions.png"

#: Images the grid shows (the first evaluated ones).
GRID_IMAGES = 16

#: Plain progress lines (not a terminal) per evaluation, at most.
PLAIN_LINES = 10


def evaluate(
    model: ToolkitModel,
    split: DataSplit,
    device: torch.device,
    *,
    out_dir: Path | None = None,
    channels_last: bool = False,
    show_progress: bool = False,
) -> dict[str, Any]:
    """The task's metrics on `split` (a fresh evaluator's `compute`, plots in `out_dir`), plus `images`
    and `skipped`.

    Given `out_dir`, also writes `val_predictions.png` there: the first `GRID_IMAGES` evaluated
    images of the raw dataset, ground truth and the evaluated predictions side by side.
    `show_progress`: a bar over the batches on a terminal (stderr), else at most `PLAIN_LINES`
    plain lines.
    """
    loader, dataset = split.loader, split.dataset
    evaluator = split.evaluator()
    kept = EvaluatedSamples(GRID_IMAGES) if out_dir is not None else None
    skipped = seen = 0
    progress = Progress(len(loader), "eval", enabled=show_progress, plain_lines=PLAIN_LINES)
    try:
        with eval_mode(model), torch.inference_mode():
            for batch in loader:
                skipped += len(batch.skipped)
                if len(batch):
                    images = batch.images.to(device, non_blocking=True)
                    if channels_last:
                        images = images.contiguous(memory_format=torch.channels_last)
                    decoded = model.decode(model(images))  # kept for the grid
                    results = model.results(decoded, batch.meta)
                    evaluator.update(results, batch.targets, batch.meta)
                    if kept is not None:
                        kept.add(decoded, batch.meta)
                    seen += len(batch)
                progress.update(1, {"images": seen})
    finally:
        progress.close()
    metrics = dict(evaluator.compute(out_dir))
    metrics["images"] = len(loader.dataset) - skipped
    metrics["skipped"] = skipped
    if kept is not None and out_dir is not None:
        save_evaluation_grid(model, dataset, kept, Path(out_dir) / PREDICTIONS_FILE)
    return metrics


def evaluate_tiled(
    model: ToolkitModel,
    split: DataSplit,
    tiling: TileSpec,
    *,
    out_dir: Path | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """The task's metrics on `split` with sliced inference: each original image of the dataset (not
    the letterboxed one the loader gives) through `model.predict(image, tile=tiling)`, the same
    tiles and merge as `toolkit predict --tile`; plus `images` and `skipped`. The evaluator's plots
    go to `out_dir`."""
    evaluator = split.evaluator()
    skipped = 0
    progress = Progress(len(split.dataset), "eval (tiled)", enabled=show_progress, plain_lines=PLAIN_LINES)
    try:
        for index in range(len(split.dataset)):
            sample = split.processed.original(index)
            if isinstance(sample, SkippedSample):
                skipped += 1
            else:
                image, target = sample
                results = model.predict([image], tile=tiling)
                evaluator.update(results, {}, [{"index": index, "image_id": sample_image_id(target, index)}])
            progress.update(1, {"images": index + 1 - skipped})
    finally:
        progress.close()
    metrics = dict(evaluator.compute(out_dir))
    metrics["images"] = len(split.dataset) - skipped
    metrics["skipped"] = skipped
    return metrics
