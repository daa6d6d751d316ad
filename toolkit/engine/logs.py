"""Run outputs: metrics.jsonl, progress (a bar on a terminal, plain lines otherwise), curves as PNG."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from toolkit import strict_json


class MetricsLog:
    """Append-only JSON-lines log of training and validation records."""

    def __init__(self, path: Path, *, resume_step: int | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            path.write_text("")
        elif path.exists():  # drop what was logged after the checkpoint we resume from
            kept = [line for line in path.read_text().splitlines() if line and _step_of(line) <= resume_step]
            path.write_text("".join(f"{line}\n" for line in kept))

    def write(self, record: Mapping[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(strict_json.dumps(record, indent=None) + "\n")  # NaN (an empty AP size class): null

    def sync(self) -> None:
        """Make what was written durable (fsync), before a checkpoint records the step."""
        if self.path.exists():
            with self.path.open("rb") as handle:
                os.fsync(handle.fileno())

    def records(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 0


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Progress:
    """A progress bar with ETA (tqdm) when the stream is a terminal, plain lines otherwise.

    `update(steps, values)` advances by `steps` and shows `values`. On a terminal the bar moves at
    every update; otherwise a line is printed only for updates that carry values, and at the end
    (so a loop can update at every step and report values every `log_interval` steps), or, with
    `plain_lines`, every total / `plain_lines` steps (at most that many lines, whatever the values).
    """

    def __init__(
        self,
        total: int,
        description: str,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        plain_lines: int | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.description = description
        self.enabled = enabled
        self.count = 0
        self.plain_every = None if plain_lines is None else max(1, -(-total // plain_lines))
        self.started = time.perf_counter()
        self.bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=description, file=self.stream, dynamic_ncols=True, leave=True)

    def update(self, steps: int = 1, values: Mapping[str, float] | None = None) -> None:
        self.count += steps
        if not self.enabled:
            return
        text = "  ".join(f"{k} {v:.4g}" for k, v in (values or {}).items())
        if self.bar is not None:
            self.bar.update(steps)
            if text:
                self.bar.set_postfix_str(text, refresh=False)
        elif self.count == self.total or (
            text if self.plain_every is None else self.count % self.plain_every == 0
        ):
            line = f"{self.description} {self.count}/{self.total}"
            print(f"{line}  {text}" if text else line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def plot_curves(records: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Loss terms and learning rate against steps, validation metrics against epochs, as one PNG."""
    train = [r for r in records if r.get("kind") == "train"]
    val = [r for r in records if r.get("kind") == "val"]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (losses, rates, metrics) = plt.subplots(1, 3, figsize=(15, 4))
    steps = [r["step"] for r in train]
    for key in sorted({k for r in train for k in r.get("loss", {})}):
        losses.plot(steps, [r["loss"].get(key, float("nan")) for r in train], label=key)
    losses.set_yscale("log")
    losses.set_title("loss terms")
    losses.set_xlabel("step")
    losses.legend()
    rates.plot(steps, [r["lr"] for r in train])
    rates.set_title("learning rate")
    rates.set_xlabel("step")
    if val:
        epochs = [r["epoch"] for r in val]
        for key in sorted({k for r in val for k, v in r["metrics"].items() if isinstance(v, (int, float))}):
            if key.startswith(("AP", "accuracy", "mAP", "VOC")):
                values = [r["metrics"].get(key) for r in val]
                values = [v if isinstance(v, (int, float)) else float("nan") for v in values]
                metrics.plot(epochs, values, marker="o", label=key)
        metrics.legend()
    metrics.set_title("validation")
    metrics.set_xlabel("epoch")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
