"""`train.time_limit` / `toolkit train --time`: a run that trains for a time instead of a number of
epochs: it ends within its budget with a valid best.pt, its schedule runs to its end over the
budget, and resuming a spent run changes nothing."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import FIXTURE_PLUGINS, run_cli
from pydantic import ValidationError
from test_trainer import DETECTION, train_records, write_spec

from toolkit.engine.optim import lr_factor
from toolkit.engine.time_budget import TimeBudget
from toolkit.spec import TrainSpec

BUDGET = 12.0


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
def test_a_run_ends_at_its_budget_with_a_valid_checkpoint_and_resume_changes_nothing(tmp_path: Path) -> None:
    spec = copy.deepcopy(DETECTION)
    spec["train"]["epochs"] = 1  # ignored with a time limit
    spec["data"]["num_workers"] = 0
    path = write_spec(tmp_path, spec)
    run = tmp_path / "run"
    result = run_cli(
        "train", str(path), "--out", str(run), "--time", str(BUDGET), pythonpath=[FIXTURE_PLUGINS]
    )
    assert result.returncode == 0, result.stderr
    assert f"time limit {BUDGET:.0f} s: trained" in result.stdout
    last = torch.load(run / "last.pt", weights_only=True)
    used = last["time_budget"]["used"]
    assert abs(used - BUDGET) <= 0.1 * BUDGET, used
    records = train_records(run)
    assert len({r["epoch"] for r in records}) > 1, "the budget should outlast one epoch"
    lrs = [r["lr"] for r in records]
    assert lrs[-1] < 0.15 * max(lrs), "the cosine schedule should have run to its end with the time"
    best = torch.load(run / "best.pt", weights_only=True)
    assert math.isfinite(best["best_value"]) and train_records(run, "val")  # evaluated at the end

    before = {name: (run / name).read_bytes() for name in ("best.pt", "metrics.jsonl")}
    again = run_cli(
        "train", str(path), "--out", str(run), "--time", str(BUDGET), "--resume", pythonpath=[FIXTURE_PLUGINS]
    )
    assert again.returncode == 0, again.stderr
    assert {name: (run / name).read_bytes() for name in before} == before
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["kind"] == "val"
