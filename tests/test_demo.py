"""`toolkit demo --finetune`: the frozen vs unfrozen fine-tuning comparison."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from conftest import run_cli


def test_finetune_demo_compares_frozen_and_unfrozen(tmp_path: Path) -> None:
    weights = tmp_path / "backbone.pt"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    result = run_cli(
        "demo", "--finetune", "--out", str(tmp_path / "demo"), "--weights", str(weights),
        "data.train.length=16", "data.val.length=8", "train.epochs=1", "model.input_size=64",
        "data.train.image_size=64", "data.val.image_size=64", "data.num_workers=0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}
    assert rows["frozen"][2:4] == ["1,026", "11,176,512"], "linear probe: only the head trains"
    assert rows["unfrozen"][2:4] == ["11,177,538", "0"]
    for variant in ("frozen", "unfrozen"):
        assert 0.0 <= float(rows[variant][1]) <= 1.0
        assert (tmp_path / "demo" / f"finetune_{variant}" / "last.pt").is_file()


def test_finetune_demo_needs_starting_weights(tmp_path: Path) -> None:
    result = run_cli("demo", "--finetune", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "run 'toolkit demo' first" in result.stderr and "--weights" in result.stderr
