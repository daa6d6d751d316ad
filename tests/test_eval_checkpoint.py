"""`toolkit eval CKPT` evaluates a run's checkpoint with the spec it carries; SPEC --checkpoint agrees."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from conftest import run_cli

SPEC = {
    "model": {
        "backbone": {"type": "resnet18", "pretrained": "none"},
        "head": {"type": "classification"},
        "input_size": 32,
        "class_names": ["absent", "present"],
    },
    "data": {
        "train": {
            "type": "shapes",
            "task": "classification",
            "length": 16,
            "image_size": 32,
            "target": "circle",
        },
        "val": {
            "type": "shapes",
            "task": "classification",
            "length": 12,
            "image_size": 32,
            "target": "circle",
            "seed": 1,
        },
        "augment": [{"type": "resize"}],
        "batch_size": 8,
        "num_workers": 0,
    },
    "train": {"epochs": 1, "device": "cpu", "threads": 2},
}


def test_eval_of_a_checkpoint_alone_uses_its_spec(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    trained = run_cli("train", str(spec), "--out", str(tmp_path / "run"), "--no-progress")
    assert trained.returncode == 0, trained.stderr
    checkpoint = tmp_path / "run" / "best.pt"
    alone = run_cli("eval", str(checkpoint), "--json")
    assert alone.returncode == 0, alone.stderr
    with_spec = run_cli("eval", str(spec), "--checkpoint", str(checkpoint), "--json")
    assert with_spec.returncode == 0, with_spec.stderr
    assert json.loads(alone.stdout) == json.loads(with_spec.stdout)
    assert json.loads(alone.stdout)["images"] == 12
    other_data = run_cli("eval", str(checkpoint), "data.val.length=5", "--json")
    assert other_data.returncode == 0 and json.loads(other_data.stdout)["images"] == 5, "overrides apply"
    no_weights = run_cli("eval", str(spec))
    assert no_weights.returncode == 2 and "pass --checkpoint" in no_weights.stderr
    both = run_cli("eval", str(checkpoint), "--checkpoint", str(checkpoint))
    assert both.returncode == 2 and "not both" in both.stderr
