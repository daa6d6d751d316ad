"""The `tensorboard` logger (optional extra `toolkit[tensorboard]`): scalars, plots and the summary.

Scalars are `toolkit.engine.loggers.scalars(record)` at the record's step; plots are images; the
summary is text. On resume, events after the resumed step are purged (`purge_step`).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import toolkit
from toolkit.errors import ToolkitError
from toolkit_plugins.loggers.run_files import RunPath, in_run

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

MISSING = "the tensorboard logger needs the tensorboard package: pip install 'toolkit[tensorboard]'"


class TensorBoardLogger:
    """A `torch.utils.tensorboard.SummaryWriter` in `log_dir` (relative to the run folder)."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.run_files = (log_dir,)  # contracts.WritesRunFiles
        self.writer: SummaryWriter | None = None

    def start(self, run_dir: Path, *, resume_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        folder = in_run(run_dir, self.log_dir)
        purge = None if resume_step is None else resume_step + 1
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge)

    def log(self, record: Mapping[str, Any]) -> None:
        from toolkit.engine.loggers import scalars

        writer = self._writer()
        step = int(record["step"])
        for tag, value in scalars(record).items():
            writer.add_scalar(tag, value, global_step=step)

    def log_image(self, tag: str, path: Path, *, step: int) -> None:
        from toolkit.data.images import read_image  # uint8 RGB [3,H,W]

        self._writer().add_image(tag, read_image(path), global_step=step)

    def flush(self) -> None:
        self._writer().flush()

    def finish(self, summary: Mapping[str, Any]) -> None:
        writer = self._writer()
        text = json.dumps(dict(summary), indent=2, default=str)
        step = summary.get("steps")
        writer.add_text(
            "summary", "\n".join(f"    {line}" for line in text.splitlines()), global_step=step
        )  # indented: a code block in TensorBoard's markdown
        writer.close()

    def _writer(self) -> SummaryWriter:
        if self.writer is None:
            raise RuntimeError("the tensorboard logger was not started")
        return self.writer


def tensorboard(log_dir: RunPath = "tensorboard") -> TensorBoardLogger:
    """TensorBoard event files: scalars, plots and the run summary (needs toolkit[tensorboard])."""
    if not _importable("tensorboard"):
        raise ToolkitError(MISSING)
    return TensorBoardLogger(log_dir)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@toolkit.hookimpl
def toolkit_register_loggers(registry: toolkit.Registry) -> None:
    registry.register("tensorboard", tensorboard)
