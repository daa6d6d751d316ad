"""Shared by the dataset implementations: the bad-sample policy, detection targets, COCO ground truth."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torchvision import tv_tensors

from toolkit.errors import BadSampleError, ToolkitError

ON_BAD_SAMPLE = ("error", "skip")


class DataWarning(UserWarning):
    """Bad samples or annotations were skipped while indexing a dataset."""


class BadSamples:
    """Applies `on_bad_sample` at index time: raise the first BadSampleError, or record and skip it."""

    def __init__(self, on_bad_sample: str, source: str) -> None:
        if on_bad_sample not in ON_BAD_SAMPLE:
            raise ToolkitError(f"on_bad_sample must be 'error' or 'skip', got {on_bad_sample!r}")
        self.mode = on_bad_sample
        self.source = source
        self.skipped: list[str] = []

    def handle(self, error: BadSampleError) -> None:
        """Raise `error` (mode "error") or record its message (mode "skip")."""
        if self.mode == "error":
            raise error
        self.skipped.append(str(error))

    def warn(self, what: str = "bad annotations or samples") -> None:
        """One warning summarizing what was skipped (nothing when nothing was)."""
        if self.skipped:
            warnings.warn(
                f"{self.source}: skipped {len(self.skipped)} {what} (first: {self.skipped[0]}); "
                "fix them, or set data.on_bad_sample: error to stop at the first one",
                DataWarning,
                stacklevel=3,
            )


class GtObject(NamedTuple):
    """One ground-truth object: XYXY box, contiguous label, crowd/ignore flags, area (None: box area)."""

    box: Sequence[float]
    label: int
    iscrowd: bool = False
    ignore: bool = False
    area: float | None = None


def detection_target(boxes: np.ndarray, labels: np.ndarray, image_id: int, height: int, width: int) -> dict:
    """The detection target contract: XYXY BoundingBoxes (float32), int64 labels, image_id."""
    return {
        "boxes": tv_tensors.BoundingBoxes(
            torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)),
            format="XYXY",
            canvas_size=(height, width),
        ),
        "labels": torch.as_tensor(np.asarray(labels, dtype=np.int64).reshape(-1)),
        "image_id": int(image_id),
    }


def coco_ground_truth(
    images: list[dict[str, Any]], objects: Sequence[Sequence[Any]], class_names: Sequence[str]
) -> dict[str, Any]:
    """COCO-format ground truth: `objects[i]` are the GtObject-like tuples of `images[i]`.

    category_id is the contiguous label; annotation ids start at 1.
    """
    annotations = []
    for image, image_objects in zip(images, objects, strict=True):
        for item in image_objects:
            obj = GtObject(*item)
            x1, y1, x2, y2 = (float(v) for v in obj.box)
            w, h = x2 - x1, y2 - y1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image["id"],
                    "category_id": int(obj.label),
                    "bbox": [x1, y1, w, h],
                    "area": float(obj.area) if obj.area is not None else w * h,
                    "iscrowd": int(bool(obj.iscrowd)),
                    "ignore": int(bool(obj.ignore)),
                }
            )
    categories = [{"id": label, "name": name} for label, name in enumerate(class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}
