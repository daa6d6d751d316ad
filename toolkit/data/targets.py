"""What a dataset's targets look like, read off a sample (the dataset contract, not a task name).

Box targets are mappings with "boxes" and "labels" (COCO, VOC, shapes detection); label targets
are one int per image (image folders, shapes classification).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def targets_have_boxes(dataset: Any) -> bool:
    """Whether the dataset's targets are box mappings (checked on its first sample; empty: False)."""
    if len(dataset) == 0:
        return False
    _, target = dataset[0]
    return isinstance(target, Mapping) and "boxes" in target
