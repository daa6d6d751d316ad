"""`ClassificationEvaluator`: accuracy, per-class precision/recall/F1 and the confusion matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from toolkit_plugins.tasks.classification_metrics import classification_metrics, plot_confusion_matrix

__all__ = ["ClassificationEvaluator"]


class ClassificationEvaluator:
    """Accumulates true and predicted labels (`toolkit.contracts.Evaluator`).

    `update` reads the true labels from `targets["label"]` ([N] int64) and each result's
    predicted `label`; `compute` returns `classification_metrics` and, given `out_dir`, writes
    `out_dir / "confusion.png"`.
    """

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = [str(name) for name in class_names]
        self.truth: list[int] = []
        self.predicted: list[int] = []

    def update(
        self,
        results: Sequence[Mapping[str, Any]],
        targets: Mapping[str, torch.Tensor],
        meta: Sequence[Mapping[str, Any]],
    ) -> None:
        """Add one batch; its results and true labels must be as many."""
        truth = torch.as_tensor(targets["label"]).detach().cpu().reshape(-1).tolist()
        if len(truth) != len(results):
            raise ValueError(f"{len(results)} results but {len(truth)} true labels in the batch")
        self.truth += [int(label) for label in truth]
        self.predicted += [int(result["label"]) for result in results]

    def compute(self, out_dir: Path | None = None) -> dict[str, Any]:
        """The metrics over every batch so far; the confusion matrix plot when `out_dir` is given."""
        metrics = dict(classification_metrics(self.truth, self.predicted, self.class_names))
        if out_dir is not None:
            plot_confusion_matrix(
                metrics["confusion_matrix"], self.class_names, Path(out_dir) / "confusion.png"
            )
        return metrics
