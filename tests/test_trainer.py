"""Training end to end: outputs, exact resume after SIGKILL, NaN stop, evaluation of a checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import FIXTURE_PLUGINS, REPO, run_cli

import toolkit
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec

DETECTION = {
    "plugins": ["fixture_tiny"],
    "model": {
        "backbone": {"type": "tiny", "width": 16},
        "head": {"type": "centernet", "neck_channels": [16, 16, 16], "head_conv": 8, "max_detections": 20},
        "input_size": 64,
        "class_names": ["circle", "square", "triangle"],
    },
    "data": {
        "train": {"type": "shapes", "length": 32, "image_size": 64, "seed": 0},
        "val": {"type": "shapes", "length": 8, "image_size": 64, "seed": 1},
        "augment": [{"type": "hflip"}, {"type": "resize"}],
        "batch_size": 4,
        "num_workers": 2,
    },
    "train": {
        "epochs": 5,
        "optimizer": {"type": "adamw", "lr": 0.01},  # learns enough for AP to change between epochs
        "schedule": {"type": "cosine"},
        "log_interval": 1,
        "device": "cpu",
        "threads": 1,
    },
}


def write_spec(directory: Path, spec: dict, name: str = "spec.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(spec))
    return path


def train_records(run: Path, kind: str = "train") -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One complete run of the detection spec (reused by several tests)."""
    directory = tmp_path_factory.mktemp("uninterrupted")
    spec = write_spec(directory, DETECTION)
    result = run_cli("train", str(spec), "--out", str(directory / "run"), pythonpath=[FIXTURE_PLUGINS])
    assert result.returncode == 0, result.stderr
    return spec, directory / "run"


def test_a_run_writes_its_outputs(uninterrupted: tuple[Path, Path]) -> None:
    _, run = uninterrupted
    for name in ("last.pt", "best.pt", "metrics.jsonl", "curves.png", "spec.yaml"):
        assert (run / name).is_file(), name
    records = train_records(run)
    assert [r["step"] for r in records] == list(range(1, 41))
    assert set(records[0]["loss"]) == {"heatmap", "size", "offset", "loss"}
    checkpoint = torch.load(run / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 5 and checkpoint["step"] == 40
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "spec"} <= set(checkpoint)
    best = torch.load(run / "best.pt", weights_only=True)  # the data's own category ids: shapes' labels
    assert best["category_ids"] == checkpoint["category_ids"] == [0, 1, 2]
    assert best["epoch"] == checkpoint["best_epoch"]
    assert json.dumps(best["metrics"]) == json.dumps(checkpoint["best_metrics"])  # NaN == NaN as text
    validation = train_records(run, "val")
    assert [r["epoch"] for r in validation] == [1, 2, 3, 4, 5]
    assert {"AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large"} <= set(validation[-1]["metrics"])


def test_resume_after_sigkill_repeats_the_same_losses(
    uninterrupted: tuple[Path, Path], tmp_path: Path
) -> None:
    spec, reference = uninterrupted
    run = tmp_path / "run"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOOLKIT_")}
    environment["PYTHONPATH"] = str(FIXTURE_PLUGINS)
    process = subprocess.Popen(
        [sys.executable, "-m", "toolkit", "train", str(spec), "--out", str(run), "--no-progress"],
        cwd=REPO, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not (run / "last.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = torch.load(run / "last.pt", weights_only=True)["epoch"]
    assert 1 <= killed_at < 5, f"the run was not interrupted mid-way (epoch {killed_at})"
    resumed = run_cli("train", str(spec), "--out", str(run), "--resume", pythonpath=[FIXTURE_PLUGINS])
    assert resumed.returncode == 0, resumed.stderr
    expected = [(r["step"], r["loss"]) for r in train_records(reference)]
    assert [(r["step"], r["loss"]) for r in train_records(run)] == expected
    validation = [r["metrics"] for r in train_records(reference, "val")]
    assert [r["metrics"] for r in train_records(run, "val")] == validation
    assert len({m["AP"] for m in validation}) > 1, "AP must change between epochs for this to pin anything"


@pytest.mark.parametrize("name", ["last.pt", "best.pt"])
def test_eval_reproduces_the_validation_of_the_checkpoint_epoch(
    uninterrupted: tuple[Path, Path], tmp_path: Path, name: str
) -> None:
    """The run's AP differs between epochs, so evaluating another epoch's weights would fail."""
    spec, run = uninterrupted
    result = run_cli(
        "eval", str(spec), "--checkpoint", str(run / name), "--json", "--out", str(tmp_path),
        pythonpath=[FIXTURE_PLUGINS],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    epoch = torch.load(run / name, weights_only=True)["epoch"]
    keys = ("AP", "AP50", "AP75", "AR_100", "VOC_mAP50", "detections")
    validation = {r["epoch"]: tuple(r["metrics"][k] for k in keys) for r in train_records(run, "val")}
    assert any(m != validation[epoch] for m in validation.values()), f"no epoch differs: {validation}"
    assert any(value > 0 for value in validation[epoch][:5]), "all-zero metrics pin nothing"
    assert tuple(metrics[k] for k in keys) == pytest.approx(validation[epoch], abs=1e-9)
    assert json.loads((tmp_path / "metrics.json").read_text())["AP"] == metrics["AP"]


def test_refuses_to_overwrite_and_rejects_bad_checkpoints(
    uninterrupted: tuple[Path, Path], tmp_path: Path
) -> None:
    spec, run = uninterrupted
    again = run_cli("train", str(spec), "--out", str(run), pythonpath=[FIXTURE_PLUGINS])
    assert again.returncode == 2 and "already holds a run" in again.stderr and "--resume" in again.stderr
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\x80\x02garbage")
    result = run_cli("eval", str(spec), "--checkpoint", str(broken), pythonpath=[FIXTURE_PLUGINS])
    assert result.returncode == 2 and "cannot read checkpoint" in result.stderr
    assert "Traceback" not in result.stderr
    missing = run_cli(
        "train", str(spec), "--out", str(tmp_path / "new"), "--resume", pythonpath=[FIXTURE_PLUGINS]
    )
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    spec = {
        "plugins": ["fixture_tiny", "fixture_nan_loss"],
        "model": {
            "backbone": {"type": "tiny", "width": 8},
            "head": {"type": "classification"},
            "input_size": 64,
            "class_names": ["absent", "present"],
        },
        "data": {
            "train": {"type": "shapes", "task": "classification", "length": 8, "image_size": 64},
            "augment": [{"type": "resize"}],
            "batch_size": 4,
            "num_workers": 0,
        },
        "train": {"epochs": 3, "loss": {"type": "nan_after", "calls": 3}, "device": "cpu"},
    }
    path = write_spec(tmp_path, spec)
    result = run_cli("train", str(path), "--out", str(tmp_path / "run"), pythonpath=[FIXTURE_PLUGINS])
    assert result.returncode == 2
    assert "not finite at step 4 (epoch 2)" in result.stderr and "cross_entropy=nan" in result.stderr
    assert "Traceback" not in result.stderr
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["step"] == 2


LEARNING = {
    "detection": (
        {"type": "centernet", "neck_channels": [16, 16, 16], "head_conv": 16, "max_detections": 20},
        ["circle", "square", "triangle"],
        {"type": "shapes", "length": 4, "image_size": 64, "seed": 0},
    ),
    "classification": (
        {"type": "classification", "dropout": 0.0},
        ["absent", "present"],
        {"type": "shapes", "task": "classification", "length": 4, "image_size": 64, "seed": 0},
    ),
}


@pytest.mark.parametrize("task", list(LEARNING))
def test_training_learns_a_fixed_batch(task: str, tmp_path: Path) -> None:
    """A few steps on one fixed batch (no augmentation: the same images each epoch) more than halve
    the loss: a sign error in the update, a loss that ignores its targets or a frozen model fail."""
    head, classes, data = LEARNING[task]
    spec = {
        "plugins": ["fixture_tiny"],
        "model": {
            "backbone": {"type": "tiny", "width": 16},
            "head": head,
            "input_size": 64,
            "class_names": classes,
        },
        "data": {"train": data, "augment": [{"type": "resize"}], "batch_size": 4, "num_workers": 0},
        "train": {
            "epochs": 25,  # one step each
            "optimizer": {"type": "adam", "lr": 0.003},
            "schedule": {"type": "constant"},
            "log_interval": 1,
            "device": "cpu",
            "threads": 1,
        },
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(FIXTURE_PLUGINS))
        manager = PluginManager()
        summary = toolkit.train(
            load_spec(spec, plugins=manager), out_dir=tmp_path / "run", plugins=manager, show_progress=False
        )
    assert summary.steps == 25
    losses = [r["loss"]["loss"] for r in train_records(tmp_path / "run")]
    assert len(losses) == 25
    assert losses[-1] < 0.5 * losses[0], losses
    assert min(losses[-5:]) < min(losses[:5]), "the loss keeps going down"
