"""Detection evaluation plots: precision-recall curves per class and the confusion matrix, as PNGs.

matplotlib (Agg canvas, no pyplot state) is imported only by these functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from toolkit_plugins.tasks.classification_metrics import confusion_matrix_figure
from toolkit_plugins.tasks.detection_confusion import BACKGROUND

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_detection_confusion", "plot_pr_curves", "pr_curves_figure"]

#: Up to this many classes get a legend entry each; beyond, their curves are drawn thin and grey.
LEGEND_CLASSES = 20


def pr_curves_figure(
    recall: np.ndarray, precision: Mapping[str, np.ndarray], ap50: Mapping[str, float]
) -> Figure:
    """Precision against `recall` [R] per class (`precision[name]` [R], -1 = undefined: a class
    without ground truth, left out), labelled "name AP50", plus the mean over the drawn classes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8.0, 6.0))  # fixed margins: a layout engine doubles the drawing time
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.08, right=0.97, bottom=0.09, top=0.94)
    axes = figure.add_subplot()
    curves = {name: values for name, values in precision.items() if (values > -1).all()}
    legend = len(curves) <= LEGEND_CLASSES
    for name, values in curves.items():
        if legend:
            axes.plot(recall, values, linewidth=1.2, label=f"{name} {ap50.get(name, float('nan')):.3f}")
        else:
            axes.plot(recall, values, linewidth=0.6, color="grey")
    if curves:
        mean = np.mean(np.stack(list(curves.values())), axis=0)
        axes.plot(recall, mean, linewidth=3.0, color="blue", label=f"all classes {mean.mean():.3f}")
        axes.legend(title="class  AP50", loc="lower left", fontsize=9)
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_title("precision-recall at IoU 0.5")
    axes.grid(alpha=0.3)
    return figure


def plot_pr_curves(
    recall: np.ndarray, precision: Mapping[str, np.ndarray], ap50: Mapping[str, float], path: str | Path
) -> Path:
    """Write `pr_curves_figure` as a PNG (parent folders created)."""
    return _save(pr_curves_figure(recall, precision, ap50), path)


def plot_detection_confusion(
    matrix: Sequence[Sequence[int]],
    class_names: Sequence[str],
    path: str | Path,
    *,
    score_threshold: float,
    iou_threshold: float,
) -> Path:
    """Write the detection confusion matrix (rows true, columns predicted, classes then background;
    `detection_confusion.detection_confusion_matrix`) with its counts, as a PNG."""
    figure = confusion_matrix_figure(matrix, [*class_names, BACKGROUND])
    figure.axes[0].set_title(f"detections: score >= {score_threshold:g}, IoU >= {iou_threshold:g}")
    return _save(figure, path)


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path
