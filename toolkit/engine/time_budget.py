"""`train.time_limit`: a run that trains for a given number of seconds instead of a number of epochs.

The learning-rate schedule (warmup, one-cycle, cosine, ...) runs over an estimated number of
optimizer steps, `total_steps`: fitted from the measured speed of the first steps, and fitted
again at each epoch's end from the speed of that epoch, so that the schedule ends when the time
does, on a fast machine or a slow one. Only training steps count (evaluations do not); a resumed run
keeps what is left of its budget.
"""

from __future__ import annotations

import math
import time
from typing import Any

#: the first fit of the schedule's length, after this many optimizer steps
FIRST_FIT_STEPS = 5


class TimeBudget:
    """Seconds of training a run may use, the seconds used so far and the schedule's fitted length."""

    def __init__(self, limit: float, *, used: float = 0.0, total_steps: int | None = None) -> None:
        self.limit = float(limit)
        self.used = float(used)
        self.total_steps = total_steps  # None until the first fit
        self._since: float | None = None
        self._fit_step = 0  # the step and time of the last fit
        self._fit_used = self.used

    def start(self) -> None:
        """Start (or go on) counting training time."""
        if self._since is None:
            self._since = time.perf_counter()

    def stop(self) -> None:
        """Stop counting (an evaluation follows, or the run ends)."""
        if self._since is not None:
            self.used += time.perf_counter() - self._since
            self._since = None

    @property
    def elapsed(self) -> float:
        """Training seconds used, the running stretch included."""
        running = time.perf_counter() - self._since if self._since is not None else 0.0
        return self.used + running

    @property
    def remaining(self) -> float:
        return max(0.0, self.limit - self.elapsed)

    def exhausted(self) -> bool:
        return self.elapsed >= self.limit

    def fit(self, step: int, *, force: bool = False) -> None:
        """Fit `total_steps` from the speed since the last fit (FIRST_FIT_STEPS steps at least);
        `force` fits at any step count (an epoch's end)."""
        steps = step - self._fit_step
        if steps <= 0 or (not force and (self.total_steps is not None or steps < FIRST_FIT_STEPS)):
            return
        seconds_per_step = max(self.elapsed - self._fit_used, 1e-9) / steps
        self.total_steps = max(step + 1, step + math.ceil(self.remaining / seconds_per_step))
        self._fit_step, self._fit_used = step, self.elapsed

    def steps_for_schedule(self, fallback: int) -> int:
        """The schedule's length: the fitted estimate, or `fallback` before the first fit."""
        return self.total_steps if self.total_steps is not None else fallback

    def state(self) -> dict[str, Any]:
        return {"limit": self.limit, "used": self.elapsed, "total_steps": self.total_steps}

    @classmethod
    def restore(cls, limit: float, state: Any) -> TimeBudget:
        """The budget of a resumed run: `limit` (the spec's, which may have changed) and what was used."""
        used = float(state.get("used", 0.0)) if isinstance(state, dict) else 0.0
        total = state.get("total_steps") if isinstance(state, dict) else None
        return cls(limit, used=used, total_steps=total if isinstance(total, int) else None)

    def describe(self, step: int, epochs: float) -> str:
        """How far the run got, for the summary."""
        return (
            f"time limit {self.limit:.0f} s: trained {self.elapsed:.0f} s, {step} steps ({epochs:.2f} epochs)"
        )
