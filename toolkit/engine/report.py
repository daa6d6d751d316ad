"""Human-readable summaries of runs and evaluations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from toolkit.table import format_table

COUNTERS = ("images", "detections", "skipped")


def format_metrics(metrics: dict[str, Any], names: Sequence[str] = ()) -> str:
    """The task's metrics (`names`, headline first; default: every scalar) and the counters, as a table."""
    names = list(names) or [
        key for key, value in metrics.items() if isinstance(value, float) and key not in COUNTERS
    ]
    rows = [[key, f"{float(metrics[key]):.4f}"] for key in names if key in metrics]
    rows += [[key, metrics[key]] for key in COUNTERS if key in metrics]
    return format_table(["metric", "value"], rows)


def format_summary(summary: Any) -> str:
    """Final summary of a training run (a RunSummary)."""
    best = "-" if summary.best_value is None else f"{summary.best_value:.4f}"
    rows = [
        ["epochs", summary.epochs],
        ["steps", summary.steps],
        ["train time (s)", f"{summary.train_seconds:.1f}"],
        ["images/s", f"{summary.images_per_second:.1f}"],
        [
            "trainable / frozen parameters",
            f"{summary.trainable_parameters:,} / {summary.frozen_parameters:,}",
        ],
        [f"best {summary.best_metric}", best],
    ]
    if summary.skipped_samples:
        rows.append(["skipped bad samples", summary.skipped_samples])
    text = format_table(["run", "value"], rows)
    if summary.final_metrics:
        text += "\n\n" + format_metrics(summary.final_metrics, summary.metric_names)
    if summary.files:
        text += "\n\n" + "\n".join(f"{name}: {path}" for name, path in summary.files.items())
    return text
