"""`train.time_limit` / `toolkit train --time`: a run that trains for a time instead of a number of
epochs: it ends within its budget with a valid best.pt, its schedule runs to its end over the
budget, and resuming a spent run changes nothing."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from test_trainer import DETECTION, train_records

from toolkit.engine.optim import lr_factor
from toolkit.engine.time_budget import TimeBudget
from toolkit.engine.trainer import train
from toolkit.spec import TrainSpec, load_spec

BUDGET = 6.0


def test_the_budget_fits_the_schedule_to_the_measured_speed(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("toolkit.engine.time_budget.time.perf_counter", lambda: clock[0])
    budget = TimeBudget(10.0)
    budget.start()
    for step in range(1, 6):  # 0.5 s per step: 5 steps use 2.5 s, 7.5 s are left for 15 more
        clock[0] += 0.5
        budget.fit(step)
    assert budget.total_steps == 20 and budget.remaining == pytest.approx(7.5)
    clock[0] += 1.0 * 5  # slower now: 1 s per step over the next 5 steps; 2.5 s left -> 3 more steps
    budget.fit(10)
    assert budget.total_steps == 20  # only the first fit happens mid-epoch ...
    budget.fit(10, force=True)  # ... an epoch's end fits again
    assert budget.total_steps == 13 and not budget.exhausted()
    clock[0] += 3.0
    assert budget.exhausted() and budget.remaining == 0.0
    budget.stop()
    restored = TimeBudget.restore(10.0, budget.state())
    assert restored.exhausted() and restored.total_steps == 13


def test_the_schedule_follows_the_fitted_length() -> None:
    config = TrainSpec.model_validate({"schedule": {"type": "cosine"}, "time_limit": 60})
    length = [100]
    factor = lr_factor(config, steps_per_epoch=10, total_steps=lambda: length[0])
    assert factor(0) == 1.0 and factor(50) == pytest.approx(0.5)
    length[0] = 50  # refitted: the same step is now at the end
    assert factor(50) == pytest.approx(0.0, abs=1e-9)


def test_a_step_schedule_counts_epochs_and_is_refused_with_a_time_limit() -> None:
    with pytest.raises(ValidationError, match="time_limit"):
        TrainSpec.model_validate({"time_limit": 30, "schedule": {"type": "step", "milestones": [2]}})


@pytest.mark.slow
def test_a_run_ends_at_its_budget_with_a_valid_checkpoint_and_resume_changes_nothing(
    tmp_path: Path, fixture_plugins_on_path: Path
) -> None:
    """In this process (the CLI's `--time` is what tests/test_real_data.py's BCCD run uses)."""
    spec = copy.deepcopy(DETECTION)
    spec["train"].update(epochs=1, time_limit=BUDGET)  # epochs: ignored with a time limit
    spec["data"]["num_workers"] = 0
    run = tmp_path / "run"
    summary = train(load_spec(spec), out_dir=run, show_progress=False)
    assert summary.time_budget is not None and f"time limit {BUDGET:.0f} s: trained" in summary.time_budget
    used = torch.load(run / "last.pt", weights_only=True)["time_budget"]["used"]
    assert abs(used - BUDGET) <= 0.1 * BUDGET, used
    records = train_records(run)
    assert len({r["epoch"] for r in records}) > 1, "the budget should outlast one epoch"
    lrs = [r["lr"] for r in records]
    assert lrs[-1] < 0.15 * max(lrs), "the cosine schedule should have run to its end with the time"
    best = torch.load(run / "best.pt", weights_only=True)
    assert math.isfinite(best["best_value"]) and train_records(run, "val")  # evaluated at the end

    before = {name: (run / name).read_bytes() for name in ("best.pt", "last.pt", "metrics.jsonl")}
    again = train(load_spec(spec), out_dir=run, resume=True, show_progress=False)
    assert {name: (run / name).read_bytes() for name in before} == before
    assert again.steps == summary.steps
