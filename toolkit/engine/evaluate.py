"""Run a model over an evaluation loader and compute its task's metrics.

The batches go through `toolkit.inference.predict_batch`, the code `model.predict` uses: decoded
outputs become per-image results in original image pixels, which the task's evaluator scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from toolkit.build import build_evaluator
from toolkit.inference import eval_mode, predict_batch
from toolkit.model import ToolkitModel


def evaluate(
    model: ToolkitModel,
    loader: DataLoader,
    device: torch.device,
    *,
    out_dir: Path | None = None,
    channels_last: bool = False,
) -> dict[str, Any]:
    """The task's metrics (its evaluator's `compute`, plots in `out_dir`), plus `images` and `skipped`."""
    evaluator = build_evaluator(model, loader.dataset.dataset)
    skipped = 0
    with eval_mode(model), torch.inference_mode():
        for batch in loader:
            skipped += len(batch.skipped)
            if not len(batch):
                continue
            images = batch.images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            evaluator.update(predict_batch(model, images, batch.meta), batch.targets, batch.meta)
    metrics = dict(evaluator.compute(out_dir))
    metrics["images"] = len(loader.dataset) - skipped
    metrics["skipped"] = skipped
    return metrics
