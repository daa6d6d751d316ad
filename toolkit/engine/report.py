"""Human-readable summaries of runs and evaluations."""

from __future__ import annotations

from typing import Any

from toolkit.table import format_table

HEADLINE = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "VOC_mAP50", "accuracy", "macro_f1"]


def format_metrics(metrics: dict[str, Any]) -> str:
    """The headline metrics as a two-column table."""
    rows = [[key, f"{float(metrics[key]):.4f}"] for key in HEADLINE if key in metrics]
    rows += [[key, metrics[key]] for key in ("images", "detections", "skipped") if key in metrics]
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
        text += "\n\n" + format_metrics(summary.final_metrics)
    if summary.files:
        text += "\n\n" + "\n".join(f"{name}: {path}" for name, path in summary.files.items())
    return text
