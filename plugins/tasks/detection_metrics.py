"""Detection metrics on COCO-format ground truth: COCO AP/AR (pycocotools) and VOC mAP (numpy).

Ground truth is the dict of `dataset.ground_truth()`: `images`, `annotations` (`bbox` xywh in
original pixels, `area`, `iscrowd`, `ignore` = VOC difficult) and `categories`; detections are
COCO results `{image_id, category_id, bbox xywh, score}` (see `detection_results.coco_results`).

Undefined values are NaN: a COCO area range (or a whole dataset) without ground truth, for which
pycocotools reports -1, and the VOC AP of a class without non-difficult ground truth. NaN cannot
be mistaken for a score and cannot win a "best checkpoint" comparison.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

__all__ = ["COCO_METRIC_NAMES", "CocoEvaluation", "coco_evaluation", "coco_metrics", "voc_map"]

#: Keys of `coco_metrics`, in the order of pycocotools' `COCOeval.stats`.
COCO_METRIC_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR_1", "AR_10", "AR_100")


@dataclass(frozen=True)
class CocoEvaluation:
    """What one COCOeval run gives: the summary, per-class values and the PR curves at IoU 0.5.

    `summary`: `COCO_METRIC_NAMES` -> value; `per_class`: class name -> `{"AP", "AP50", "objects"}`
    (AP over IoU 0.50:0.95 and AP at IoU 0.5, area all, 100 detections per image; `objects` the
    class's ground truth that is neither crowd nor difficult); `recall`: COCOeval's recall
    thresholds [R]; `precision50`: class name -> precision [R] at IoU 0.5 (-1 where undefined).
    """

    summary: dict[str, float]
    per_class: dict[str, dict[str, Any]]
    recall: np.ndarray
    precision50: dict[str, np.ndarray]


def coco_metrics(
    ground_truth: Mapping[str, Any], detections: Sequence[Mapping[str, Any]], *, verbose: bool = False
) -> dict[str, float]:
    """COCO bbox AP/AR (`COCO_METRIC_NAMES`) of `detections` against `ground_truth`.

    The summary of `coco_evaluation` (see there for crowd, difficult and empty cases).
    """
    return coco_evaluation(ground_truth, detections, verbose=verbose).summary


def coco_evaluation(
    ground_truth: Mapping[str, Any], detections: Sequence[Mapping[str, Any]], *, verbose: bool = False
) -> CocoEvaluation:
    """One pycocotools bbox evaluation: summary stats, per-class AP/AP50/objects and PR curves.

    Crowd (`iscrowd`) and difficult (`ignore`) objects are both evaluated as pycocotools crowd
    regions: a detection matching one is neither a true nor a false positive, and missing one costs
    no recall. Note that pycocotools matches crowd regions by IoA (intersection over the detection's
    area), so a detection inside a difficult box is ignored even when its IoU is small. No
    detections give AP 0.0 (where ground truth exists); a class without ground truth gets NaN.
    Neither argument is modified; pycocotools' printing is captured unless `verbose`.
    """
    gt = _coco_ground_truth(ground_truth)
    _check_detections(gt, detections)
    sink = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with sink:
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if detections:
            coco_dt = coco_gt.loadRes([_detection(d) for d in detections])
        else:  # loadRes fails on an empty list: an empty result set with the same images
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    summary = {
        name: math.nan if value < 0 else float(value)
        for name, value in zip(COCO_METRIC_NAMES, evaluator.stats[: len(COCO_METRIC_NAMES)], strict=True)
    }
    return _per_class(evaluator, gt, summary)


def _per_class(evaluator: COCOeval, gt: Mapping[str, Any], summary: dict[str, float]) -> CocoEvaluation:
    """Per-class values read from an accumulated COCOeval (area "all", the largest maxDets)."""
    params = evaluator.params
    precision = np.asarray(evaluator.eval["precision"])  # [T, R, K, A, M]
    area = list(params.areaRngLbl).index("all")
    iou50 = int(np.flatnonzero(np.isclose(params.iouThrs, 0.5))[0])
    names = {category["id"]: str(category.get("name", category["id"])) for category in gt["categories"]}
    objects: dict[Any, int] = defaultdict(int)
    for annotation in gt["annotations"]:
        objects[annotation["category_id"]] += 0 if annotation["iscrowd"] else 1
    per_class: dict[str, dict[str, Any]] = {}
    curves: dict[str, np.ndarray] = {}
    for k, category_id in enumerate(params.catIds):
        values = precision[:, :, k, area, -1]  # [T, R]
        name = names[category_id]
        per_class[name] = {
            "AP": _mean_defined(values),
            "AP50": _mean_defined(values[iou50]),
            "objects": objects[category_id],
        }
        curves[name] = values[iou50].copy()
    return CocoEvaluation(summary, per_class, np.asarray(params.recThrs, dtype=np.float64), curves)


def _mean_defined(values: np.ndarray) -> float:
    """Mean of the entries > -1 (pycocotools' "undefined"), NaN when there are none."""
    defined = values[values > -1]
    return float(defined.mean()) if defined.size else math.nan


def voc_map(
    ground_truth: Mapping[str, Any],
    detections: Sequence[Mapping[str, Any]],
    iou_threshold: float = 0.5,
    use_07_metric: bool = False,
) -> dict[str, Any]:
    """Pascal VOC mAP: `{"mAP<t>": float, "per_class": {name: AP}}`, `<t>` = 100 * iou_threshold
    ("mAP50" by default).

    Per class, detections are taken in descending score order (ties keep input order); each is
    matched to the ground truth of its image with the highest IoU; IoU >= `iou_threshold` with an
    unmatched object is a true positive, with an already matched one or below the threshold a false
    positive, and with a difficult object (`ignore` or `iscrowd`) neither (VOC devkit rule);
    difficult objects do not count in recall. AP is the area under the interpolated
    precision/recall curve (all points, VOC2010+) or the 11-point mean when `use_07_metric`.
    Boxes are continuous (no +1 pixel convention). A class without non-difficult ground truth gets
    AP NaN and is left out of the mean (NaN if no class has any).
    """
    gt = _coco_ground_truth(ground_truth)
    _check_detections(gt, detections)
    key = f"mAP{round(100 * iou_threshold):d}"
    objects: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    found: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for annotation in gt["annotations"]:
        objects[annotation["category_id"]].append(annotation)
    for detection in detections:
        found[detection["category_id"]].append(detection)
    per_class: dict[str, float] = {}
    for category in gt["categories"]:
        label = category["id"]
        ap = _class_ap(objects[label], found[label], iou_threshold, use_07_metric)
        per_class[str(category.get("name", label))] = ap
    defined = [ap for ap in per_class.values() if not math.isnan(ap)]
    return {key: float(np.mean(defined)) if defined else math.nan, "per_class": per_class}


def _class_ap(
    objects: Sequence[Mapping[str, Any]],
    detections: Sequence[Mapping[str, Any]],
    iou_threshold: float,
    use_07_metric: bool,
) -> float:
    """VOC AP of one class (see `voc_map`)."""
    difficult_flags = np.array([bool(o["iscrowd"]) for o in objects], dtype=bool)
    positives = int((~difficult_flags).sum())
    if positives == 0:
        return math.nan
    if not detections:
        return 0.0
    gt_boxes = xywh_to_xyxy([o["bbox"] for o in objects])
    gt_images = np.array([o["image_id"] for o in objects])
    det_boxes = xywh_to_xyxy([d["bbox"] for d in detections])
    det_images = np.array([d["image_id"] for d in detections])
    order = np.argsort(-np.array([d["score"] for d in detections], dtype=np.float64), kind="stable")
    true_positive = np.zeros(len(detections))
    false_positive = np.zeros(len(detections))
    for image in np.unique(det_images):
        in_image = np.flatnonzero(gt_images == image)
        dets = order[det_images[order] == image]  # this image's detections, highest score first
        if in_image.size == 0:
            false_positive[dets] = 1
            continue
        overlaps = pairwise_iou(det_boxes[dets], gt_boxes[in_image])
        best, best_iou = overlaps.argmax(axis=1), overlaps.max(axis=1)
        difficult = difficult_flags[in_image]
        matched = np.zeros(in_image.size, dtype=bool)
        for det, gt_index, iou in zip(dets, best, best_iou, strict=True):  # greedy, in score order
            if iou < iou_threshold:
                false_positive[det] = 1
            elif difficult[gt_index]:
                continue
            elif matched[gt_index]:
                false_positive[det] = 1
            else:
                true_positive[det] = matched[gt_index] = 1
    tp = np.cumsum(true_positive[order])
    fp = np.cumsum(false_positive[order])
    recall = tp / positives
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return _average_precision(recall, precision, use_07_metric)


def _average_precision(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool) -> float:
    """Area under the precision envelope (all points) or the VOC2007 11-point mean."""
    if use_07_metric:
        points = [precision[recall >= t].max() if (recall >= t).any() else 0.0 for t in np.linspace(0, 1, 11)]
        return float(np.mean(points))
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # envelope: max precision to the right
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def pairwise_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU matrix [D, G] of xyxy boxes."""
    top_left = np.maximum(boxes[:, None, :2], others[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], others[None, :, 2:])
    intersection = np.clip(bottom_right - top_left, 0, None).prod(axis=-1)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    union = area(boxes)[:, None] + area(others)[None, :] - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1.0), 0.0)


def xywh_to_xyxy(bboxes: Sequence[Sequence[float]]) -> np.ndarray:
    """COCO [x, y, w, h] boxes as an xyxy float64 array [N, 4]."""
    xywh = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def _coco_ground_truth(ground_truth: Mapping[str, Any]) -> dict[str, Any]:
    """A copy for pycocotools: `iscrowd` = crowd or difficult, `area` filled in; input untouched."""
    annotations = []
    for index, annotation in enumerate(ground_truth.get("annotations", [])):
        x, y, w, h = (float(v) for v in annotation["bbox"])
        annotations.append(
            {
                **annotation,
                "id": annotation.get("id", index + 1),
                "bbox": [x, y, w, h],
                "area": float(annotation.get("area", w * h)),
                "iscrowd": int(bool(annotation.get("iscrowd", 0) or annotation.get("ignore", 0))),
            }
        )
    return {
        "images": [dict(image) for image in ground_truth.get("images", [])],
        "annotations": annotations,
        "categories": [dict(category) for category in ground_truth.get("categories", [])],
    }


def _check_detections(gt: Mapping[str, Any], detections: Sequence[Mapping[str, Any]]) -> None:
    """ValueError naming the first detection whose image or category is not in the ground truth."""
    images = {image["id"] for image in gt["images"]}
    categories = {category["id"] for category in gt["categories"]}
    for index, detection in enumerate(detections):
        if detection["image_id"] not in images:
            raise ValueError(
                f"detection {index} has image_id {detection['image_id']!r}, which the ground truth "
                "does not have; evaluate detections of the dataset's own images"
            )
        if detection["category_id"] not in categories:
            raise ValueError(
                f"detection {index} has category_id {detection['category_id']!r}; the ground truth "
                f"has categories {sorted(categories)} (does the model's num_classes match the data?)"
            )


def _detection(detection: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of one COCO result with plain numbers (loadRes writes into the dicts it gets)."""
    return {
        "image_id": detection["image_id"],
        "category_id": detection["category_id"],
        "bbox": [float(v) for v in detection["bbox"]],
        "score": float(detection["score"]),
    }
