"""Detection confusion matrix with a background row and column, from COCO-format ground truth.

Rows are the true class (the ground truth's categories in order) then "background"; columns are the
predicted class then "background". Detections scoring at least `score_threshold` are taken highest
score first (ties keep input order); each is matched, whatever the classes, to the unmatched object
of its image it overlaps most, if that IoU is at least `iou_threshold`. A match counts at (true
class, predicted class); an object left unmatched at (true class, background); a detection left
unmatched at (background, predicted class). Crowd and difficult objects (`iscrowd`, `ignore`) are
not counted, and neither is an unmatched detection that overlaps one at `iou_threshold` or more.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from toolkit_plugins.tasks.detection_metrics import pairwise_iou, xywh_to_xyxy

__all__ = ["BACKGROUND", "detection_confusion_matrix"]

#: Name of the last row and column.
BACKGROUND = "background"


def detection_confusion_matrix(
    ground_truth: Mapping[str, Any],
    detections: Sequence[Mapping[str, Any]],
    *,
    score_threshold: float = 0.25,
    iou_threshold: float = 0.5,
) -> list[list[int]]:
    """The [K+1, K+1] matrix (nested lists of ints, K = number of categories; see the module)."""
    index = {category["id"]: k for k, category in enumerate(ground_truth.get("categories", []))}
    background = len(index)
    matrix = np.zeros((background + 1, background + 1), dtype=np.int64)
    objects: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for annotation in ground_truth.get("annotations", []):
        objects[annotation["image_id"]].append(annotation)
    found: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for detection in detections:
        if float(detection["score"]) >= score_threshold:
            found[detection["image_id"]].append(detection)
    for image in {*objects, *found}:
        counted = [o for o in objects[image] if not (o.get("iscrowd") or o.get("ignore"))]
        ignored = [o for o in objects[image] if o.get("iscrowd") or o.get("ignore")]
        dets = sorted(found[image], key=lambda d: -float(d["score"]))  # stable: ties keep input order
        boxes = xywh_to_xyxy([d["bbox"] for d in dets])
        overlaps = pairwise_iou(boxes, xywh_to_xyxy([o["bbox"] for o in counted]))
        on_ignored = pairwise_iou(boxes, xywh_to_xyxy([o["bbox"] for o in ignored]))
        matched = np.zeros(len(counted), dtype=bool)
        for d, detection in enumerate(dets):
            predicted = index[detection["category_id"]]
            candidates = np.where(matched, -1.0, overlaps[d])  # an object is matched once
            best = int(candidates.argmax()) if candidates.size else -1
            if best >= 0 and candidates[best] >= iou_threshold:
                matched[best] = True
                matrix[index[counted[best]["category_id"]], predicted] += 1
            elif not (on_ignored.shape[1] and on_ignored[d].max() >= iou_threshold):
                matrix[background, predicted] += 1
        for obj, hit in zip(counted, matched, strict=True):
            if not hit:
                matrix[index[obj["category_id"]], background] += 1
    return matrix.tolist()
