"""Detections of an image's tiles merged into the image's own: the detection task's `merge_tiles`.

Each tile's boxes are shifted by the tile's origin, then merged per class:
- "nms" (torchvision's `batched_nms`): of boxes overlapping by IoU >= `iou`, the best-scored stays;
- "fusion" (greedy non-maximum merging, as SAHI's GREEDYNMM): in score order, each box not yet
  taken takes every box of its class that overlaps it by intersection over the *smaller* box >=
  `iou`, and the group becomes their enclosing box with the best score. A tile border that cuts an
  object leaves a partial box inside the whole one (intersection over the smaller box 1), so the
  object comes back as one box, whole, even when the partial box scored higher.

Overlaps are computed only between boxes whose x ranges can meet (windows over the boxes sorted by
x1), so a 10,000-pixel image with tens of thousands of tile detections merges in little memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchvision.ops import batched_nms

MERGE_METHODS = ("fusion", "nms")
_CHUNK = 1024  # boxes compared against their window at once


def shifted(parts: Sequence[Mapping[str, Any]], origins: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """All tiles' detections in image pixels: boxes float64 [n,4], scores [n], labels [n], class_names."""
    boxes, scores, labels, names = [], [], [], []
    for part, (x0, y0) in zip(parts, origins, strict=True):
        offset = torch.tensor([x0, y0, x0, y0], dtype=torch.float64)
        boxes.append(torch.as_tensor(part["boxes"], dtype=torch.float64).reshape(-1, 4) + offset)
        scores.append(torch.as_tensor(part["scores"], dtype=torch.float64).reshape(-1))
        labels.append(torch.as_tensor(part["labels"], dtype=torch.int64).reshape(-1))
        names += list(part.get("class_names", []))
    return {
        "boxes": torch.cat(boxes) if boxes else torch.zeros(0, 4, dtype=torch.float64),
        "scores": torch.cat(scores) if scores else torch.zeros(0, dtype=torch.float64),
        "labels": torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64),
        "class_names": names,
    }


def overlapping_pairs(
    boxes: torch.Tensor, labels: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(i, j), i != j, of boxes of one label whose intersection over the smaller box is >= threshold."""
    count = len(boxes)
    if count < 2:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty
    by_x1 = torch.argsort(boxes[:, 0])
    x1_sorted = boxes[by_x1, 0].contiguous()
    widest = float((boxes[:, 2] - boxes[:, 0]).max())
    areas = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    firsts, seconds = [], []
    for start in range(0, count, _CHUNK):
        rows = by_x1[start : start + _CHUNK]
        low = int(torch.searchsorted(x1_sorted, boxes[rows, 0].min() - widest, right=False))
        high = int(torch.searchsorted(x1_sorted, boxes[rows, 2].max(), right=True))
        columns = by_x1[low:high]
        a, b = boxes[rows][:, None, :], boxes[columns][None, :, :]
        width = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
        height = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
        smaller = torch.minimum(areas[rows][:, None], areas[columns][None, :]).clamp(min=1e-12)
        match = (width * height / smaller >= threshold) & (labels[rows][:, None] == labels[columns][None, :])
        match &= rows[:, None] != columns[None, :]
        row_index, column_index = match.nonzero(as_tuple=True)
        firsts.append(rows[row_index])
        seconds.append(columns[column_index])
    return torch.cat(firsts), torch.cat(seconds)


def greedy_fusion(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, list[int]]:
    """Fused boxes [m,4] and the index of each group's best box (its score, label), best first."""
    first, second = overlapping_pairs(boxes, labels, threshold)
    neighbours: list[list[int]] = [[] for _ in range(len(boxes))]
    for i, j in zip(first.tolist(), second.tolist(), strict=True):
        neighbours[i].append(j)
    taken = [False] * len(boxes)
    fused, leaders = [], []
    for leader in torch.argsort(scores, descending=True, stable=True).tolist():
        if taken[leader]:
            continue
        group = [leader] + [j for j in neighbours[leader] if not taken[j]]
        for member in group:
            taken[member] = True
        members = boxes[group]
        fused.append(torch.cat([members[:, :2].min(dim=0).values, members[:, 2:].max(dim=0).values]))
        leaders.append(leader)
    return (torch.stack(fused) if fused else boxes.new_zeros(0, 4)), leaders


def merge_tiles(
    parts: Sequence[Mapping[str, Any]], origins: Sequence[tuple[int, int]], *, method: str, iou: float
) -> dict[str, Any]:
    """One image's `{boxes, scores, labels, class_names}` from its tiles' results (see the module)."""
    if method not in MERGE_METHODS:
        raise ValueError(f"merge method must be one of {', '.join(MERGE_METHODS)}, got {method!r}")
    merged = shifted(parts, origins)
    boxes, scores, labels, names = (merged[key] for key in ("boxes", "scores", "labels", "class_names"))
    if method == "nms":
        keep = batched_nms(boxes.float(), scores.float(), labels, iou).tolist() if len(boxes) else []
        kept_boxes = boxes[keep]
    else:
        kept_boxes, keep = greedy_fusion(boxes, scores, labels, iou)
    return {
        "boxes": kept_boxes.reshape(-1, 4),
        "scores": scores[keep],
        "labels": labels[keep],
        "class_names": [names[index] for index in keep] if names else [],
    }
