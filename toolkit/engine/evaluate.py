"""Run a model over an evaluation loader and compute the task's metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from toolkit.errors import ToolkitError


def decoded_batches(
    model: torch.nn.Module, loader: DataLoader, device: torch.device, *, channels_last: bool = False
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(batch, decoded predictions) for each non-empty batch; skipped samples stay on the batch."""
    model.eval()
    with torch.inference_mode():
        for batch in loader:
            if not len(batch):
                yield batch, {}
                continue
            images = batch.images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield batch, model.decode(model(images))


def predict_detections(
    model: torch.nn.Module, loader: DataLoader, device: torch.device, *, channels_last: bool = False
) -> tuple[list[dict[str, Any]], int]:
    """COCO-format detections (original image pixels) for every image of the loader, and skipped count."""
    from toolkit.engine.predictions import detections_to_coco

    results: list[dict[str, Any]] = []
    skipped = 0
    input_size = tuple(model.input_size)
    for batch, decoded in decoded_batches(model, loader, device, channels_last=channels_last):
        skipped += len(batch.skipped)
        if decoded:
            results.extend(detections_to_coco(decoded, batch.meta, input_size))
    return results, skipped


def predict_labels(
    model: torch.nn.Module, loader: DataLoader, device: torch.device, *, channels_last: bool = False
) -> tuple[list[int], list[int], int]:
    """(true labels, predicted labels, skipped count) over the loader."""
    truth: list[int] = []
    predicted: list[int] = []
    skipped = 0
    for batch, decoded in decoded_batches(model, loader, device, channels_last=channels_last):
        skipped += len(batch.skipped)
        if decoded:
            truth.extend(batch.targets["label"].tolist())
            predicted.extend(decoded["labels"].cpu().tolist())
    return truth, predicted, skipped


def evaluate(
    model: torch.nn.Module,
    loader: DataLoader,
    device: torch.device,
    *,
    out_dir: Path | None = None,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Detection: COCO AP/AP50/AP75/size APs (pycocotools) + VOC mAP@0.5; classification: accuracy,
    per-class precision/recall and a confusion matrix (PNG in out_dir)."""
    dataset = loader.dataset.dataset
    if model.task == "detection":
        from toolkit.engine.metrics import coco_metrics, voc_map

        detections, skipped = predict_detections(model, loader, device, channels_last=channels_last)
        truth = dataset.ground_truth()
        metrics: dict[str, Any] = dict(coco_metrics(truth, detections))
        voc = voc_map(truth, detections)
        metrics["VOC_mAP50"] = float(voc["mAP50"])
        metrics["detections"] = len(detections)
    elif model.task == "classification":
        from toolkit.engine.classification_metrics import classification_metrics, plot_confusion_matrix

        truth_labels, predicted, skipped = predict_labels(model, loader, device, channels_last=channels_last)
        metrics = dict(classification_metrics(truth_labels, predicted, list(model.class_names)))
        if out_dir is not None:
            plot_confusion_matrix(
                metrics["confusion_matrix"], list(model.class_names), out_dir / "confusion.png"
            )
    else:
        raise ToolkitError(f"cannot evaluate a model whose head has task {model.task!r}")
    metrics["images"] = len(loader.dataset) - skipped
    metrics["skipped"] = skipped
    return metrics


def default_best_metric(task: str) -> str:
    return "AP" if task == "detection" else "accuracy"
