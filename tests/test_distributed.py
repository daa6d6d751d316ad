"""torchrun with 2 CPU processes (gloo) trains like one process with the combined batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import FIXTURE_PLUGINS, REPO, run_cli

SPEC = {
    "plugins": ["fixture_tiny"],
    "model": {
        "backbone": {"type": "tiny", "width": 8},
        "head": {"type": "classification", "dropout": 0.0},
        "input_size": 64,
        "class_names": ["absent", "present"],
    },
    "data": {
        "train": {"type": "shapes", "task": "classification", "length": 16, "image_size": 64, "seed": 0},
        "val": {"type": "shapes", "task": "classification", "length": 8, "image_size": 64, "seed": 1},
        "augment": [{"type": "hflip"}, {"type": "resize"}],
        "batch_size": 8,
        "num_workers": 1,
    },
    "train": {
        "epochs": 2,
        "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9},
        "schedule": {"type": "constant"},
        "log_interval": 1,
        "device": "cpu",
        "threads": 1,
    },
}


def records(run: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC))
    single = run_cli("train", str(spec_path), "--out", str(tmp_path / "single"), pythonpath=[FIXTURE_PLUGINS])
    assert single.returncode == 0, single.stderr

    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOOLKIT_")}
    environment["PYTHONPATH"] = str(FIXTURE_PLUGINS)
    environment["OMP_NUM_THREADS"] = "1"
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "toolkit", "train", str(spec_path), "--out", str(tmp_path / "ddp"), "data.batch_size=4"],
        capture_output=True, text=True, cwd=REPO, env=environment, timeout=600,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    single_train, ddp_train = records(tmp_path / "single", "train"), records(tmp_path / "ddp", "train")
    assert [r["step"] for r in ddp_train] == [r["step"] for r in single_train] == [1, 2, 3, 4]
    for one, two in zip(single_train, ddp_train, strict=True):
        assert two["loss"]["loss"] == pytest.approx(one["loss"]["loss"], rel=1e-5, abs=1e-6)
    assert len(records(tmp_path / "ddp", "val")) == 2, "rank 0 alone evaluates and logs"
    one = torch.load(tmp_path / "single" / "last.pt", weights_only=True)["model"]
    two = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)["model"]
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
