"""One split of a spec's data, built once (`Builder.split`): what training, evaluation, attacks and
export verification receive instead of calling back into the builder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from toolkit.contracts import Evaluator, Task, missing_members
from toolkit.errors import ToolkitError
from toolkit.guard import component_label, guard, label_as

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from toolkit.data.pipeline import ProcessedDataset


@dataclass(frozen=True)
class DataSplit:
    """`data.<name>`: the dataset as registered (original images and targets), the processed dataset
    (transforms, encoded targets), its loader, and the task and class names that evaluate it."""

    name: str
    dataset: Any
    processed: ProcessedDataset
    loader: DataLoader
    task: Task
    class_names: list[str]

    def evaluator(self) -> Evaluator:
        """A fresh evaluator of the task for this split's dataset."""
        return new_evaluator(self.task, self.dataset, self.class_names)


def new_evaluator(task: Task, dataset: Any, class_names: Sequence[str]) -> Evaluator:
    """A fresh evaluator of `task` for `dataset`, checked against `Evaluator` and guarded
    (`toolkit.guard`: its exceptions name it); every evaluation, torch or onnxruntime, builds its
    evaluator here."""
    evaluator = task.evaluator(dataset, list(class_names))  # a guarded task names itself
    missing = missing_members(evaluator, Evaluator)
    if missing:
        raise ToolkitError(
            f"task {task.name!r} built an evaluator ({type(evaluator).__name__}) that lacks "
            f"{', '.join(missing)} (toolkit.contracts.Evaluator); see docs/plugins.md, section 4"
        )
    label_as(evaluator, f"the evaluator of {component_label(task)}")
    return guard(evaluator)
