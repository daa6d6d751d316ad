"""Human-readable summaries of runs and evaluations."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from toolkit.table import format_table


def format_metrics(metrics: dict[str, Any], names: Sequence[str] = ()) -> str:
    """The task's metrics (`names`, headline first; default: every float) and its counters (the int
    entries, e.g. images, skipped and the task's own such as detections), as a table; then, when
    `metrics["per_class"]` is `{class: {column: number}}`, a per-class table."""
    names = list(names) or [key for key, value in metrics.items() if isinstance(value, float)]
    rows = [
        [key, _cell(float(metrics[key]) if metrics[key] is not None else None)]
        for key in names
        if key in metrics
    ]
    rows += [[key, value] for key, value in metrics.items() if _is_count(value) and key not in names]
    text = format_table(["metric", "value"], rows)
    per_class = format_per_class(metrics.get("per_class"))
    return f"{text}\n\n{per_class}" if per_class else text


def format_per_class(per_class: Any) -> str:
    """`{class: {column: number}}` as a table, one row per class: the integer columns (counts such
    as detection `objects` or classification `support`) first, then the others in their order
    (detection: objects, AP, AP50, VOC AP50). Empty text for anything else."""
    if not isinstance(per_class, Mapping) or not per_class:
        return ""
    entries = list(per_class.values())
    if not all(isinstance(entry, Mapping) for entry in entries):
        return ""
    columns = list(entries[0])
    if not columns or not all(list(entry) == columns for entry in entries):
        return ""
    if not all(_is_number(entry[column]) for entry in entries for column in columns):
        return ""
    counts = [c for c in columns if all(isinstance(entry[c], int) for entry in entries)]
    columns = counts + [c for c in columns if c not in counts]
    rows = [[str(name), *(_cell(values[column]) for column in columns)] for name, values in per_class.items()]
    return format_table(["class", *(column.replace("_", " ") for column in columns)], rows)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: int | float | None) -> str:
    """An integer as is, a float to 4 places, a missing value (NaN, None: e.g. the AP of a size class
    with no objects) as "-"."""
    if isinstance(value, int):
        return str(value)
    return "-" if value is None or math.isnan(value) else f"{float(value):.4f}"


def format_run_summary(summary: Any) -> str:
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
    if summary.time_budget:
        rows.append(["time budget", summary.time_budget])
    if summary.box_quirks and any(summary.box_quirks):
        dropped, clipped = summary.box_quirks
        rows.append(["training boxes dropped / clipped", f"{dropped} / {clipped} (docs/data.md: box quirks)"])
    if summary.skipped_samples:
        rows.append(["skipped bad samples", summary.skipped_samples])
    text = format_table(["run", "value"], rows)
    best, last = summary.best_metrics, summary.final_metrics
    if best:
        text += f"\n\nbest.pt (epoch {summary.best_epoch}), the run's model:\n"
        text += format_metrics(best, summary.metric_names)
    if last and last != best:
        text += f"\n\nlast epoch ({summary.epochs}, last.pt):\n" + format_metrics(last, summary.metric_names)
    if summary.files:
        text += "\n\n" + "\n".join(f"{name}: {path}" for name, path in summary.files.items())
    return text
