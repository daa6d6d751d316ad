"""Detections of two runs (torch and onnxruntime) compared as sets, for export verification.

TopK with a constant K may order near-tied scores differently, and the last places may hold
different near-tied peaks: detections are matched per image by label (each to its closest
counterpart), and those whose score is within `tolerance` of the smallest kept score are left out.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def _one_way(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
    other_boxes: np.ndarray, other_scores: np.ndarray, other_labels: np.ndarray,
    floor: float, side: float,
) -> tuple[float, float, float]:  # fmt: skip
    """Largest (score, relative box, unmatched) differences of each detection above `floor`."""
    worst_score = worst_box = unmatched = 0.0
    for box, score, label in zip(boxes, scores, labels, strict=True):
        if score <= floor:
            continue
        same = other_labels == label
        if not same.any():
            unmatched = float("inf")
            continue
        score_diff = np.abs(other_scores[same] - score)
        box_diff = np.abs(other_boxes[same] - box).max(axis=1) / side
        best = int(np.argmin(np.maximum(score_diff, box_diff)))
        worst_score = max(worst_score, float(score_diff[best]))
        worst_box = max(worst_box, float(box_diff[best]))
    return worst_score, worst_box, unmatched


def compare_detections(
    expected: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    image_size: tuple[int, int],
    tolerance: float,
) -> dict[str, float]:
    """{"scores", "boxes" (relative to max(H, W)), "labels" (0, or inf when a detection has no
    counterpart of its class)} over a batch of decoded detections, both directions."""
    side = float(max(image_size))
    worst = {"scores": 0.0, "boxes": 0.0, "labels": 0.0}
    if expected["scores"].shape != actual["scores"].shape:
        return {key: float("inf") for key in worst}
    for n in range(expected["scores"].shape[0]):
        a = (expected["boxes"][n], expected["scores"][n], expected["labels"][n])
        b = (actual["boxes"][n], actual["scores"][n], actual["labels"][n])
        if not a[1].size:
            continue
        floor = float(min(a[1].min(), b[1].min())) + tolerance
        for first, second in ((a, b), (b, a)):
            score, box, unmatched = _one_way(*first, *second, floor=floor, side=side)
            worst["scores"] = max(worst["scores"], score)
            worst["boxes"] = max(worst["boxes"], box)
            worst["labels"] = max(worst["labels"], unmatched)
    return worst
