"""Image classification task, registered without importing torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import toolkit

if TYPE_CHECKING:
    from toolkit_plugins.tasks.classification_task import ClassificationTask


def classification() -> ClassificationTask:
    """Image classification: class probabilities; accuracy, macro precision/recall/F1, confusion matrix."""
    from toolkit_plugins.tasks.classification_task import ClassificationTask

    return ClassificationTask()


@toolkit.hookimpl
def toolkit_register_tasks(registry: toolkit.Registry) -> None:
    registry.register("classification", classification)
