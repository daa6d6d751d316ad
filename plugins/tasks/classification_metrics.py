"""Classification metrics (accuracy, per-class precision/recall/F1, confusion matrix) and its plot.

matplotlib is imported only by the plotting functions, so the metrics work without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["classification_metrics", "confusion_matrix_figure", "plot_confusion_matrix"]


def classification_metrics(labels: Any, predictions: Any, class_names: Sequence[str]) -> dict[str, Any]:
    """Metrics of predicted class indices against true ones (1-D ints: lists, arrays or CPU tensors).

    Returns `accuracy`, `balanced_accuracy` (the mean per-class recall, as sklearn defines it: 0.5
    for a constant guess on two classes, however imbalanced), `macro_precision`, `macro_recall`,
    `macro_f1` (unweighted means over the classes), `per_class` {name: {precision, recall, f1,
    support}} and `confusion_matrix` (nested lists, rows true class, columns predicted class). A
    zero denominator gives 0.0. ValueError on mismatched lengths or indices outside `range(len(class_names))`.
    """
    true = _indices(labels, "labels")
    predicted = _indices(predictions, "predictions")
    classes = len(class_names)
    if true.shape != predicted.shape:
        raise ValueError(f"labels ({true.size}) and predictions ({predicted.size}) differ in length")
    for name, values in (("labels", true), ("predictions", predicted)):
        if values.size and (values.min() < 0 or values.max() >= classes):
            raise ValueError(f"{name} hold indices outside 0..{classes - 1} ({classes} class names)")
    matrix = np.bincount(true * classes + predicted, minlength=classes * classes).reshape(classes, classes)
    hits = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    precision = _divide(hits, matrix.sum(axis=0))
    recall = _divide(hits, support)
    f1 = _divide(2 * precision * recall, precision + recall)
    per_class = {
        str(name): {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    return {
        "accuracy": float(_divide(hits.sum(), true.size)),
        "balanced_accuracy": float(recall[support > 0].mean()) if (support > 0).any() else 0.0,
        "macro_precision": float(precision.mean()) if classes else 0.0,
        "macro_recall": float(recall.mean()) if classes else 0.0,
        "macro_f1": float(f1.mean()) if classes else 0.0,
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }


def confusion_matrix_figure(matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> Figure:
    """A matplotlib Figure (Agg canvas, no pyplot state) of the matrix with the counts in the cells."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(matrix, dtype=np.int64)
    classes = len(class_names)
    if counts.shape != (classes, classes):
        raise ValueError(f"confusion matrix of shape {counts.shape} does not match {classes} class names")
    side = min(4.0 + 0.5 * classes, 30.0)
    figure = Figure(figsize=(side, side), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(counts, cmap="Blues", vmin=0)
    figure.colorbar(image, ax=axes, shrink=0.8)
    ticks = np.arange(classes)
    axes.set_xticks(ticks, labels=[str(n) for n in class_names], rotation=45, ha="right")
    axes.set_yticks(ticks, labels=[str(n) for n in class_names])
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    threshold = counts.max() / 2 if counts.size else 0
    for row in range(classes):
        for col in range(classes):
            value = int(counts[row, col])
            color = "white" if value > threshold else "black"
            axes.text(col, row, str(value), ha="center", va="center", color=color, fontsize=9)
    return figure


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path
) -> Path:
    """Write the confusion matrix (rows true, columns predicted, counts in the cells) as a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    confusion_matrix_figure(matrix, class_names).savefig(path, format="png", dpi=100)
    return path


def _indices(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values).reshape(-1)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integer class indices, got dtype {array.dtype}")
    return array.astype(np.int64)


def _divide(numerator: Any, denominator: Any) -> np.ndarray:
    """numerator / denominator elementwise, 0.0 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    safe = np.where(denominator == 0, 1.0, denominator)
    return np.where(denominator == 0, 0.0, numerator / safe)
