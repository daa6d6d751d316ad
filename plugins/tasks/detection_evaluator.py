"""`DetectionEvaluator`: COCO AP (pycocotools), VOC mAP@0.5, per-class values, a confusion matrix
and the plots (PR curves, confusion matrix) of detection results over a dataset."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from toolkit.errors import ToolkitError
from toolkit_plugins.tasks.detection_confusion import detection_confusion_matrix
from toolkit_plugins.tasks.detection_metrics import coco_evaluation, voc_map
from toolkit_plugins.tasks.detection_results import coco_results

__all__ = ["DetectionEvaluator"]


class DetectionEvaluator:
    """Accumulates COCO results (`toolkit.contracts.Evaluator`) against COCO-format ground truth.

    `update` reads each image's `boxes`, `scores` and `labels` (the detection task's results, in
    original pixels) and `meta[i]["image_id"]`; `compute` returns `coco_metrics` (AP, AP50, ...,
    AR_100), `VOC_mAP50`, `detections` (the number of results), `per_class` (class name ->
    `{"AP", "AP50", "VOC_AP50", "objects"}`, NaN where the class has no ground truth) and
    `confusion_matrix` (rows: true class then background; columns: predicted class then
    background; detections scoring >= `confusion_score` matched at IoU >= `confusion_iou`, see
    `detection_confusion`).

    Only the images `update` saw are scored: an evaluation of part of a dataset (the first N
    images of an attack, a run that skipped bad samples) is not charged with the others' objects.
    """

    def __init__(
        self, ground_truth: Mapping[str, Any], *, confusion_score: float = 0.25, confusion_iou: float = 0.5
    ) -> None:
        self.ground_truth = ground_truth
        self.detections: list[dict[str, Any]] = []
        self.seen: set[Any] = set()  # image ids of the batches so far
        self.confusion_score = confusion_score
        self.confusion_iou = confusion_iou

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
        image_ids = [item["image_id"] for item in meta]
        self.seen.update(image_ids)
        self.detections += coco_results(results, image_ids)

    def _seen_ground_truth(self) -> Mapping[str, Any]:
        """The ground truth restricted to the images seen (all of it when every image was seen)."""
        images = self.ground_truth.get("images", [])
        if all(image["id"] in self.seen for image in images):
            return self.ground_truth
        return {
            **self.ground_truth,
            "images": [image for image in images if image["id"] in self.seen],
            "annotations": [
                a for a in self.ground_truth.get("annotations", []) if a["image_id"] in self.seen
            ],
        }

    def compute(self, out_dir: Path | None = None) -> dict[str, Any]:
        """The metrics over every batch so far (one COCOeval run); given `out_dir`, also writes
        `pr_curves.png` and `confusion.png` there."""
        truth = self._seen_ground_truth()
        coco = coco_evaluation(truth, self.detections)
        voc = voc_map(truth, self.detections)
        metrics: dict[str, Any] = dict(coco.summary)
        metrics["VOC_mAP50"] = float(voc["mAP50"])
        metrics["detections"] = len(self.detections)
        metrics["per_class"] = {
            name: {
                "AP": values["AP"],
                "AP50": values["AP50"],
                "VOC_AP50": float(voc["per_class"].get(name, math.nan)),
                "objects": int(values["objects"]),
            }
            for name, values in coco.per_class.items()
        }
        metrics["confusion_matrix"] = detection_confusion_matrix(
            truth,
            self.detections,
            score_threshold=self.confusion_score,
            iou_threshold=self.confusion_iou,
        )
        if out_dir is not None:
            self._plot(Path(out_dir), coco.recall, coco.precision50, metrics)
        return metrics

    def _plot(
        self, out_dir: Path, recall: Any, precision: Mapping[str, Any], metrics: Mapping[str, Any]
    ) -> None:
        """`pr_curves.png` and `confusion.png` in `out_dir`."""
        from toolkit_plugins.tasks.detection_plots import plot_detection_confusion, plot_pr_curves

        ap50 = {name: values["AP50"] for name, values in metrics["per_class"].items()}
        plot_pr_curves(recall, precision, ap50, out_dir / "pr_curves.png")
        names = [str(c.get("name", c["id"])) for c in self.ground_truth.get("categories", [])]
        plot_detection_confusion(
            metrics["confusion_matrix"],
            names,
            out_dir / "confusion.png",
            score_threshold=self.confusion_score,
            iou_threshold=self.confusion_iou,
        )
