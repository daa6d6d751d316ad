"""Checks of the options every prediction path takes (torch-free: the CLI runs them before torch)."""

from __future__ import annotations

import math
from typing import Any

from toolkit.errors import ToolkitError


def check_score_threshold(score_threshold: Any, *, option: str = "score threshold") -> float:
    """`score_threshold` as a float in [0, 1]; NaN, infinities and values outside are a ToolkitError."""
    try:
        value = float(score_threshold)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value <= 1.0:  # NaN fails every comparison: refused too
        raise ToolkitError(f"predict: the {option} must be a number in [0, 1], got {score_threshold!r}")
    return value


def check_batch_size(batch_size: Any, *, option: str = "batch_size") -> int:
    """`batch_size` as an int >= 1, else a ToolkitError."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ToolkitError(f"predict: {option} must be an integer >= 1, got {batch_size!r}")
    return batch_size
