"""The `csv` logger: one row per epoch in `results.csv`, the columns people grep.

Columns: `epoch`, `step`, `seconds`, `lr`, then `train/<term>` (the epoch's mean loss terms), then the
scalar validation metrics by their names (`AP`, `AP50`, ..., `accuracy`); cells are empty when the
epoch was not evaluated. A row that brings a new column rewrites the (small) file, atomically, with
the extended header; on resume, rows after the resumed step are dropped.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping
from numbers import Real
from pathlib import Path
from typing import Any

import toolkit
from toolkit_plugins.loggers.run_files import RunPath, in_run

#: the first columns, always there
BASE_COLUMNS = ("epoch", "step", "seconds", "lr")
TRAIN_PREFIX = "train/"
VAL_PREFIX = "val/"  # only for a metric named like a base column


class CsvLogger:
    """Writes each "epoch" record as a row; other records are ignored."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.run_files = (filename,)  # contracts.WritesRunFiles
        self.path: Path | None = None
        self.columns: list[str] = []
        self.rows: list[dict[str, Any]] = []

    def start(self, run_dir: Path, *, resume_step: int | None) -> None:
        self.path = in_run(run_dir, self.filename)
        self.columns, self.rows = [], []
        if resume_step is None:
            self.path.unlink(missing_ok=True)  # a fresh run starts a fresh table
        elif self.path.exists():
            with self.path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                header = list(reader.fieldnames or [])
                rows = [row for row in reader if int(row["step"]) <= resume_step]
            self.rows = [{key: value for key, value in row.items() if value} for row in rows]
            # the columns the kept rows fill: the header the uninterrupted run had at that step
            self.columns = [column for column in header if any(column in row for row in self.rows)]
            if self.rows:
                self._rewrite()
            else:
                self.path.unlink()

    def log(self, record: Mapping[str, Any]) -> None:
        if record.get("kind") != "epoch":
            return
        row = epoch_row(record)
        self.rows.append(row)
        new = [column for column in row if column not in self.columns]
        if new or not self._path().exists():
            self.columns = ordered_columns([*self.columns, *new])
            self._rewrite()
        else:
            with self._path().open("a", newline="", encoding="utf-8") as handle:
                self._writer(handle).writerow(row)

    def log_image(self, tag: str, path: Path, *, step: int) -> None:
        """Images are not logged."""

    def flush(self) -> None:
        if self._path().exists():
            with self._path().open("rb") as handle:
                os.fsync(handle.fileno())

    def finish(self, summary: Mapping[str, Any]) -> None:
        self.flush()

    def _rewrite(self) -> None:
        from toolkit.engine.saving import write_atomic

        text = io.StringIO(newline="")
        writer = self._writer(text)
        writer.writeheader()
        writer.writerows(self.rows)
        write_atomic(self._path(), text.getvalue().encode("utf-8"))

    def _writer(self, handle: Any) -> csv.DictWriter:
        return csv.DictWriter(handle, fieldnames=self.columns, restval="", lineterminator="\n")

    def _path(self) -> Path:
        if self.path is None:
            raise RuntimeError("the csv logger was not started")
        return self.path


def epoch_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """The row of an "epoch" record: base columns, `train/<term>`, then the scalar metrics."""
    row: dict[str, Any] = {column: record[column] for column in BASE_COLUMNS if column in record}
    for term, value in (record.get("train_loss") or {}).items():
        row[f"{TRAIN_PREFIX}{term}"] = value
    for name, value in (record.get("metrics") or {}).items():
        if isinstance(value, Real) and not isinstance(value, bool):
            column = name if name not in row else f"{VAL_PREFIX}{name}"
            row[column] = value
    return row


def ordered_columns(columns: Iterable[str]) -> list[str]:
    """Base columns first (in their order), then loss terms, then metrics, each in first-seen order."""

    def group(column: str) -> tuple[int, int]:
        if column in BASE_COLUMNS:
            return (0, BASE_COLUMNS.index(column))
        return (1, 0) if column.startswith(TRAIN_PREFIX) else (2, 0)

    return sorted(dict.fromkeys(columns), key=group)


def csv_results(filename: RunPath = "results.csv") -> CsvLogger:
    """One row per epoch: epoch, step, seconds, lr, mean loss terms, validation metrics (results.csv)."""
    return CsvLogger(filename)


@toolkit.hookimpl
def toolkit_register_loggers(registry: toolkit.Registry) -> None:
    registry.register("csv", csv_results)
