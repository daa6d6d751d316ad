"""Object detection task, registered without importing torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import toolkit

if TYPE_CHECKING:
    from toolkit_plugins.tasks.detection_task import DetectionTask


def detection() -> DetectionTask:
    """Object detection: boxes, scores and labels; COCO AP (pycocotools) and VOC mAP@0.5."""
    from toolkit_plugins.tasks.detection_task import DetectionTask

    return DetectionTask()


@toolkit.hookimpl
def toolkit_register_tasks(registry: toolkit.Registry) -> None:
    registry.register("detection", detection)
