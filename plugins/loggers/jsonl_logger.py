"""The `jsonl` logger: "train" and "val" records, one JSON object per line (`metrics.jsonl`).

The format is `toolkit.engine.logs.MetricsLog`'s, read back by `toolkit.engine.logs.read_metrics`;
"epoch" records are not written, so existing readers see the file they always did.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import toolkit
from toolkit_plugins.loggers.run_files import RunPath, in_run

if TYPE_CHECKING:
    from toolkit.engine.logs import MetricsLog

#: the record kinds this logger writes
WRITTEN = ("train", "val")


class JsonlLogger:
    """Appends "train" and "val" records to a JSON-lines file; on resume keeps lines up to the step."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.run_files = (filename,)  # contracts.WritesRunFiles
        self.metrics: MetricsLog | None = None

    def start(self, run_dir: Path, *, resume_step: int | None) -> None:
        from toolkit.engine.logs import MetricsLog

        self.metrics = MetricsLog(in_run(run_dir, self.filename), resume_step=resume_step)

    def log(self, record: Mapping[str, Any]) -> None:
        if record.get("kind") in WRITTEN:
            self._log().write(record)

    def log_image(self, tag: str, path: Path, *, step: int) -> None:
        """Images are not logged (the plots are files of the run folder)."""

    def flush(self) -> None:
        self._log().sync()

    def finish(self, summary: Mapping[str, Any]) -> None:
        self._log().sync()

    def _log(self) -> MetricsLog:
        if self.metrics is None:
            raise RuntimeError("the jsonl logger was not started")
        return self.metrics


def jsonl(filename: RunPath = "metrics.jsonl") -> JsonlLogger:
    """Training and validation records as JSON lines (metrics.jsonl)."""
    return JsonlLogger(filename)


@toolkit.hookimpl
def toolkit_register_loggers(registry: toolkit.Registry) -> None:
    registry.register("jsonl", jsonl)
