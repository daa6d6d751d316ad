"""`DetectionTask`: boxes, scores and labels from a CenterNet-style decode (`toolkit.contracts.Task`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torchvision.transforms import v2

from toolkit.data.drawing import draw_boxes
from toolkit.data.stats import DatasetStats, box_stats
from toolkit_plugins.tasks.attack_objectives import (
    DETECTION_OBJECTIVES,
    detection_attack_loss,
    detection_attack_success,
)
from toolkit_plugins.tasks.detection_results import coco_results, image_results

if TYPE_CHECKING:
    from toolkit_plugins.tasks.detection_evaluator import DetectionEvaluator

__all__ = ["DetectionTask"]


class DetectionTask:
    """Object detection. A plain object without state, so it pickles into DataLoader workers.

    Dataset targets are `{"boxes": BoundingBoxes XYXY, "labels": int64 [M], "image_id": int}`;
    a result is `{"boxes": float64 [k,4] xyxy, "scores": float64 [k], "labels": int64 [k],
    "class_names": [str] * k}` in original image pixels, on the CPU.
    """

    name: str = "detection"
    dataset_tasks: tuple[str, ...] = ("detection",)
    metric_names: tuple[str, ...] = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "VOC_mAP50")
    best_metric: str = "AP"
    lower_is_better: tuple[str, ...] = ()  # every metric: higher is better
    result_file_names: tuple[str, ...] = ("results_coco.json",)
    dataset_formats: tuple[str, ...] = ("coco", "voc", "yolo")
    output_names: Mapping[str, str] = {  # a plain dict: JSON-serializable; read-only by convention
        "boxes": "[N, K, 4] float32, xyxy in input pixels",
        "scores": "[N, K] float32, descending",
        "labels": "[N, K] int64",
    }

    attack_objectives: tuple[str, ...] = DETECTION_OBJECTIVES  # the first is the default

    # per-image loss [N] an attack drives up, and per-image success (None: the image does not count)
    attack_loss = staticmethod(detection_attack_loss)
    attack_success = staticmethod(detection_attack_success)

    def __repr__(self) -> str:
        return "DetectionTask()"

    def prepare_target(self, target: Mapping[str, Any]) -> dict[str, Any]:
        """A shallow copy of the dataset's target dict (the augmentations transform the copy)."""
        return dict(target)

    def transforms_after(self) -> list[Any]:
        """Drop boxes the augmentations made degenerate or moved off the image, with their labels."""
        return [v2.SanitizeBoundingBoxes(min_size=1.0)]

    def encode_target(
        self, target: Mapping[str, Any], encoder: Callable[..., Any]
    ) -> dict[str, torch.Tensor]:
        """`encoder(boxes float32 [M,4] xyxy, labels int64 [M])`, the head's target encoder."""
        return encoder(target["boxes"].as_subclass(torch.Tensor).float(), target["labels"])

    def results(
        self,
        decoded: Mapping[str, torch.Tensor],
        meta: Sequence[Mapping[str, Any]],
        input_size: tuple[int, int],
        class_names: Sequence[str],
        score_threshold: float = 0.0,
    ) -> list[dict[str, Any]]:
        """One result per image: boxes mapped back to original pixels and clipped, zero-area boxes,
        scores below `score_threshold` and negative (padding) labels dropped, decoder order kept."""
        results = image_results(decoded, meta, input_size, score_threshold=score_threshold)
        for result in results:
            result["class_names"] = [_class_name(class_names, label) for label in result["labels"].tolist()]
        return results

    def result_files(
        self,
        records: Sequence[Mapping[str, Any]],
        category_ids: Sequence[int] | None,
        image_ids: Sequence[int],
    ) -> dict[str, Any]:
        """results_coco.json: `{image_id, file_name, category_id, bbox [x, y, w, h], score}` per
        detection of predict's records, category_id the dataset's own id (`category_ids[label]`)
        when known, else the label."""
        detections = []
        for record, image_id in zip(records, image_ids, strict=True):
            for detection in coco_results([record], [image_id]):
                label = detection["category_id"]
                known = category_ids is not None and 0 <= label < len(category_ids)
                detection["category_id"] = int(category_ids[label]) if known else label  # type: ignore[index]
                detections.append({**detection, "file_name": record["image"]})
        return {"results_coco.json": detections}

    def merge_tiles(
        self,
        parts: Sequence[Mapping[str, Any]],
        origins: Sequence[tuple[int, int]],
        *,
        method: str,
        iou: float,
    ) -> dict[str, Any]:
        """Sliced inference: the tiles' detections in image pixels, merged per class by greedy box
        fusion or NMS (`detection_tiling.merge_tiles`)."""
        from toolkit_plugins.tasks.detection_tiling import merge_tiles

        return merge_tiles(parts, origins, method=method, iou=iou)

    def dataset_stats(self, dataset: Any) -> DatasetStats:
        """`toolkit data stats`: images, objects and box sizes per class from the ground truth."""
        return box_stats(dataset)

    def evaluator(self, dataset: Any, class_names: Sequence[str]) -> DetectionEvaluator:
        """COCO AP and VOC mAP@0.5 against `dataset.ground_truth()`."""
        from toolkit_plugins.tasks.detection_evaluator import DetectionEvaluator

        return DetectionEvaluator.for_dataset(dataset)

    def compare_outputs(
        self,
        expected: Mapping[str, Any],
        actual: Mapping[str, Any],
        image_size: tuple[int, int],
        tolerance: float,
    ) -> dict[str, float]:
        """Decoded detections of two runs compared as sets (`detection_compare.compare_detections`)."""
        from toolkit_plugins.tasks.detection_compare import compare_detections

        return compare_detections(expected, actual, image_size, tolerance)

    def draw(
        self, image: torch.Tensor, result: Mapping[str, Any], class_names: Sequence[str]
    ) -> torch.Tensor:
        """`image` (uint8 [3,H,W], the result's pixel frame) with every box labelled "name 0.87"."""
        labels = [int(label) for label in _tensor(result["labels"]).tolist()]
        names = result.get("class_names") or [_class_name(class_names, label) for label in labels]
        scores = _tensor(result["scores"]).tolist()
        texts = [f"{name} {score:.2f}" for name, score in zip(names, scores, strict=True)]
        return draw_boxes(image, _tensor(result["boxes"]), texts, labels)

    def draw_target(
        self, image: torch.Tensor, target: Mapping[str, Any], class_names: Sequence[str]
    ) -> torch.Tensor:
        """`image` (uint8 [3,H,W]) with every ground-truth box labelled with its class name."""
        labels = [int(label) for label in _tensor(target["labels"]).tolist()]
        texts = [_class_name(class_names, label) for label in labels]
        return draw_boxes(image, _tensor(target["boxes"]).float(), texts, labels)


def _class_name(class_names: Sequence[str], label: int) -> str:
    """The class name of a label, or the label itself when it is outside `class_names`."""
    return str(class_names[label]) if 0 <= label < len(class_names) else str(label)


def _tensor(value: Any) -> torch.Tensor:
    """A plain CPU tensor (tv_tensors unwrapped) from a tensor or a list."""
    if torch.is_tensor(value):
        return value.detach().cpu().as_subclass(torch.Tensor)
    return torch.as_tensor(value)
