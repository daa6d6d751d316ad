"""`DetectionEvaluator`: COCO AP (pycocotools) and VOC mAP@0.5 of detection results over a dataset."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from toolkit.errors import ToolkitError
from toolkit_plugins.tasks.detection_metrics import coco_metrics, voc_map
from toolkit_plugins.tasks.detection_results import coco_results

__all__ = ["DetectionEvaluator"]


class DetectionEvaluator:
    """Accumulates COCO results (`toolkit.contracts.Evaluator`) against COCO-format ground truth.

    `update` reads each image's `boxes`, `scores` and `labels` (the detection task's results, in
    original pixels) and `meta[i]["image_id"]`; `compute` returns `coco_metrics` (AP, AP50, ...,
    AR_100), `VOC_mAP50` and `detections` (the number of results).
    """

    def __init__(self, ground_truth: Mapping[str, Any]) -> None:
        self.ground_truth = ground_truth
        self.detections: list[dict[str, Any]] = []

    @classmethod
    def for_dataset(cls, dataset: Any) -> DetectionEvaluator:
        """An evaluator of `dataset.ground_truth()`; ToolkitError when the dataset offers none."""
        ground_truth = getattr(dataset, "ground_truth", None)
        if not callable(ground_truth):
            raise ToolkitError(
                f"cannot evaluate detections on a {type(dataset).__name__} dataset: it has no "
                "ground_truth() method returning COCO-format ground truth (see toolkit.contracts.Dataset)"
            )
        return cls(ground_truth())

    def update(
        self,
        results: Sequence[Mapping[str, Any]],
        targets: Mapping[str, torch.Tensor],
        meta: Sequence[Mapping[str, Any]],
    ) -> None:
        """Add one batch: `results[i]` belongs to the image `meta[i]["image_id"]`; `targets` unused."""
        if len(results) != len(meta):
            raise ValueError(f"{len(results)} results but {len(meta)} meta records in the batch")
        self.detections += coco_results(results, [item["image_id"] for item in meta])

    def compute(self, out_dir: Path | None = None) -> dict[str, Any]:
        """The metrics over every batch so far (`out_dir` unused: no plots)."""
        metrics: dict[str, Any] = dict(coco_metrics(self.ground_truth, self.detections))
        metrics["VOC_mAP50"] = float(voc_map(self.ground_truth, self.detections)["mAP50"])
        metrics["detections"] = len(self.detections)
        return metrics
