"""`ClassificationTask`: one class per image from a softmax decode (`toolkit.contracts.Task`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from toolkit.data.drawing import caption
from toolkit.data.stats import DatasetStats, label_stats
from toolkit_plugins.tasks.attack_objectives import (
    CLASSIFICATION_OBJECTIVES,
    classification_attack_loss,
    classification_attack_success,
)

if TYPE_CHECKING:
    from toolkit_plugins.tasks.classification_evaluator import ClassificationEvaluator

__all__ = ["ClassificationTask"]


class ClassificationTask:
    """Image classification. A plain object without state, so it pickles into DataLoader workers.

    Dataset targets are int labels (or one-element int tensors); a result is `{"probs": float32
    [C], "label": int, "class_name": str, "score": float}` on the CPU.
    """

    name: str = "classification"
    dataset_tasks: tuple[str, ...] = ("classification",)
    metric_names: tuple[str, ...] = (
        "accuracy",
        "balanced_accuracy",
        "macro_precision",
        "macro_recall",
        "macro_f1",
    )
    best_metric: str = "accuracy"
    lower_is_better: tuple[str, ...] = ()  # every metric: higher is better
    dataset_formats: tuple[str, ...] = ("folder",)
    output_names: Mapping[str, str] = {  # a plain dict: JSON-serializable; read-only by convention
        "logits": "[N, C] float32",
        "probs": "[N, C] float32 class probabilities (softmax)",
    }

    attack_objectives: tuple[str, ...] = CLASSIFICATION_OBJECTIVES  # the first is the default

    # per-image loss [N] an attack drives up, and per-image success (None: the image does not count)
    attack_loss = staticmethod(classification_attack_loss)
    attack_success = staticmethod(classification_attack_success)

    def __repr__(self) -> str:
        return "ClassificationTask()"

    def prepare_target(self, target: Any) -> dict[str, Any]:
        """`{"label": int64 scalar tensor}` from an int label."""
        return {"label": torch.as_tensor(int(target), dtype=torch.int64)}

    def transforms_after(self) -> list[Any]:
        """None: the label survives any augmentation."""
        return []

    def encode_target(
        self, target: Mapping[str, Any], encoder: Callable[..., Any]
    ) -> dict[str, torch.Tensor]:
        """`encoder(label)`, the head's target encoder."""
        return encoder(target["label"])

    def results(
        self,
        decoded: Mapping[str, torch.Tensor],
        meta: Sequence[Mapping[str, Any]],
        input_size: tuple[int, int],
        class_names: Sequence[str],
        score_threshold: float = 0.0,
    ) -> list[dict[str, Any]]:
        """One result per image from `probs` [N,C] (class probabilities; the label is their argmax,
        so an exported graph's `probs` suffices); the threshold is ignored (every image has a class)."""
        probs = decoded["probs"].detach().cpu().to(torch.float32)
        if probs.dim() != 2 or probs.shape[0] != len(meta):
            raise ValueError(
                f"classification results expect probs [N, C] with N = len(meta) = {len(meta)}; "
                f"got probs {tuple(probs.shape)}"
            )
        labels = probs.argmax(dim=1)
        return [
            {
                "probs": row,
                "label": label,
                "class_name": _class_name(class_names, label),
                "score": float(row[label]) if 0 <= label < row.numel() else 0.0,
            }
            for row, label in zip(probs, labels.tolist(), strict=True)
        ]

    def dataset_stats(self, dataset: Any) -> DatasetStats:
        """`toolkit data stats`: images per class."""
        return label_stats(dataset)

    def evaluator(self, dataset: Any, class_names: Sequence[str]) -> ClassificationEvaluator:
        """Accuracy, macro precision/recall/F1 and the confusion matrix over `class_names`."""
        from toolkit_plugins.tasks.classification_evaluator import ClassificationEvaluator

        return ClassificationEvaluator(class_names)

    def draw(
        self, image: torch.Tensor, result: Mapping[str, Any], class_names: Sequence[str]
    ) -> torch.Tensor:
        """`image` (uint8 [3,H,W]) framed in the predicted class's colour, "name 0.87" written on it."""
        label = int(result["label"])
        name = result.get("class_name") or _class_name(class_names, label)
        return caption(image, f"{name} {float(result['score']):.2f}", label)

    def draw_target(
        self, image: torch.Tensor, target: Mapping[str, Any], class_names: Sequence[str]
    ) -> torch.Tensor:
        """`image` (uint8 [3,H,W]) framed in the true class's colour, its name written on it."""
        label = int(target["label"])
        return caption(image, _class_name(class_names, label), label)


def _class_name(class_names: Sequence[str], label: int) -> str:
    """The class name of a label, or the label itself when it is outside `class_names`."""
    return str(class_names[label]) if 0 <= label < len(class_names) else str(label)
