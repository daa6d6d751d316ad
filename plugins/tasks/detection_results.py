"""Decoded detections (model-input pixels) -> per-image results and COCO results in original pixels.

The inverse of the evaluation resize is per image: with `meta["letterbox"] = [scale, pad_left,
pad_top]` (aspect-preserving resize plus padding) `x = (x' - pad_left) / scale`, likewise y;
without it the image was stretched to the input size and `x = x' * W_orig / W_in`,
`y = y' * H_orig / H_in`. The arithmetic is float64 on the CPU, so inverting a letterbox whose
scale and pads are exact binary numbers is exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["coco_results", "detections_to_coco", "image_results", "original_boxes"]


def original_boxes(
    boxes: torch.Tensor, meta: Sequence[Mapping[str, Any]], input_size: tuple[int, int]
) -> torch.Tensor:
    """Map xyxy `boxes` [N,K,4] (model-input pixels, any device) to original image pixels.

    `meta[i]` has `orig_size` (H, W) and optionally `letterbox`; `input_size` is the model input
    (H, W). Returns a float64 CPU tensor [N,K,4], clipped to each original image.
    """
    if boxes.dim() != 3 or boxes.shape[-1] != 4 or boxes.shape[0] != len(meta):
        raise ValueError(
            f"expected boxes [N, K, 4] with N = len(meta) = {len(meta)}; got boxes {tuple(boxes.shape)}"
        )
    in_h, in_w = (float(v) for v in input_size)
    offsets, numerators, denominators, limits = [], [], [], []
    for i, item in enumerate(meta):
        if "orig_size" not in item:
            raise ValueError(f"meta[{i}] has no 'orig_size' (original H, W); its keys are {sorted(item)}")
        height, width = _cpu(item["orig_size"]).reshape(-1).tolist()
        limits.append([width, height, width, height])
        record = item.get("letterbox")
        if record is not None:
            scale, left, top = _cpu(record).reshape(-1).tolist()
            offsets.append([left, top, left, top])
            numerators.append([1.0] * 4)
            denominators.append([scale] * 4)
        else:
            offsets.append([0.0] * 4)
            numerators.append([width, height, width, height])
            denominators.append([in_w, in_h, in_w, in_h])
    offset, numerator, denominator, limit = (
        torch.tensor(rows, dtype=torch.float64).reshape(-1, 1, 4)
        for rows in (offsets, numerators, denominators, limits)
    )
    original = (_cpu(boxes).to(torch.float64) - offset) * numerator / denominator
    return torch.minimum(original.clamp(min=0.0), limit)


def image_results(
    decoded: Mapping[str, torch.Tensor],
    meta: Sequence[Mapping[str, Any]],
    input_size: tuple[int, int],
    *,
    score_threshold: float = 0.0,
) -> list[dict[str, torch.Tensor]]:
    """One `{boxes, scores, labels}` per image, in original image pixels, on the CPU.

    `decoded`: `boxes` [N,K,4] xyxy in model-input pixels, `scores` [N,K], `labels` [N,K], on any
    device (moved to the CPU once); `meta[i]` has `orig_size` (H, W) and optionally `letterbox`;
    `input_size` is the model input (H, W). Boxes are clipped to the original image; boxes of
    zero area after clipping, scores below `score_threshold` and negative labels (padding) are
    dropped; the rest keep decoder order. Each image gets `boxes` float64 [k,4] xyxy, `scores`
    float64 [k] and `labels` int64 [k].
    """
    boxes, scores, labels = (decoded[key] for key in ("boxes", "scores", "labels"))
    if boxes.dim() != 3 or scores.shape != boxes.shape[:2] or labels.shape != scores.shape:
        raise ValueError(
            "detection results expect boxes [N, K, 4] and scores, labels [N, K]; got boxes "
            f"{tuple(boxes.shape)}, scores {tuple(scores.shape)}, labels {tuple(labels.shape)}"
        )
    if not meta:
        return []
    original = original_boxes(boxes, meta, input_size)
    scores = _cpu(scores).to(torch.float64)
    labels = _cpu(labels).to(torch.int64)
    widths = original[..., 2] - original[..., 0]
    heights = original[..., 3] - original[..., 1]
    keep = (widths > 0) & (heights > 0) & (scores >= score_threshold) & (labels >= 0)
    return [
        {"boxes": original[n][keep[n]], "scores": scores[n][keep[n]], "labels": labels[n][keep[n]]}
        for n in range(len(meta))
    ]


def coco_results(results: Sequence[Mapping[str, Any]], image_ids: Sequence[Any]) -> list[dict[str, Any]]:
    """COCO results `{image_id, category_id, bbox [x, y, w, h], score}` (plain Python numbers).

    `results[i]` (as `image_results` gives) holds `boxes` xyxy [k,4], `scores` [k] and `labels`
    [k] of the image `image_ids[i]`; the label is the category id. Order: image, then result.
    """
    if len(results) != len(image_ids):
        raise ValueError(f"{len(results)} image results but {len(image_ids)} image ids")
    detections: list[dict[str, Any]] = []
    for result, image_id in zip(results, image_ids, strict=True):
        boxes = _cpu(result["boxes"], torch.float64).reshape(-1, 4)
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)
        scores = _cpu(result["scores"], torch.float64).reshape(-1)
        labels = _cpu(result["labels"]).to(torch.int64).reshape(-1)
        image = int(_cpu(image_id))
        detections += [
            {"image_id": image, "category_id": label, "bbox": bbox, "score": score}
            for label, bbox, score in zip(labels.tolist(), xywh.tolist(), scores.tolist(), strict=True)
        ]
    return detections


def detections_to_coco(
    decoded: Mapping[str, torch.Tensor],
    meta: Sequence[Mapping[str, Any]],
    input_size: tuple[int, int],
    *,
    score_threshold: float = 0.0,
) -> list[dict[str, Any]]:
    """COCO results `{image_id, category_id, bbox [x, y, w, h], score}` in original image pixels.

    `image_results` then `coco_results`: the same clipping and dropping; `meta[i]` also has
    `image_id`. Order: image, then decoder.
    """
    results = image_results(decoded, meta, input_size, score_threshold=score_threshold)
    return coco_results(results, [item["image_id"] for item in meta])


def _cpu(value: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A detached CPU tensor (of `dtype` when given) from a tensor on any device, a number or a list
    (Python floats become float64 without a round trip through float32)."""
    tensor = value.detach().cpu() if torch.is_tensor(value) else torch.as_tensor(value, dtype=dtype)
    return tensor if dtype is None else tensor.to(dtype)
