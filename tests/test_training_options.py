"""train.accumulate, train.ema, lean best.pt and best.safetensors: exact values and exact resume."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import FIXTURE_PLUGINS
from torch import nn

import toolkit
from toolkit.checkpoints import load_checkpoint
from toolkit.engine.ema import WeightsAverage, ema_decay
from toolkit.errors import ToolkitError
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec
from toolkit.spec.train import EmaSpec

CLASSIFIER: dict[str, Any] = {
    "plugins": ["fixture_tiny"],
    "model": {
        "backbone": {"type": "tiny", "width": 8},
        "head": {"type": "classification", "dropout": 0.0},
        "input_size": 32,
        "class_names": ["absent", "present"],
    },
    "data": {
        "train": {"type": "shapes", "task": "classification", "length": 10, "image_size": 32, "seed": 0},
        "val": {"type": "shapes", "task": "classification", "length": 4, "image_size": 32, "seed": 1},
        "augment": [{"type": "resize"}],
        "batch_size": 2,
        "num_workers": 0,
    },
    "train": {
        "epochs": 2,
        "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.0, "weight_decay": 0.0},
        "schedule": {"type": "constant"},
        "log_interval": 1,
        "device": "cpu",
        "threads": 1,
    },
}


def train_spec(spec: dict[str, Any], out: Path, *, resume: bool = False) -> toolkit.RunSummary:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(FIXTURE_PLUGINS))
        manager = PluginManager()
        return toolkit.train(
            load_spec(spec, plugins=manager), out_dir=out, resume=resume, plugins=manager, show_progress=False
        )


def with_train(**train: Any) -> dict[str, Any]:
    spec = copy.deepcopy(CLASSIFIER)
    spec["train"].update(train)
    return spec


def with_batch(spec: dict[str, Any], batch_size: int) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    spec["data"]["batch_size"] = batch_size
    return spec


def records(run: Path, kind: str) -> list[dict[str, Any]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_accumulation_equals_training_with_the_larger_batch(tmp_path: Path) -> None:
    """10 images, batch 2, accumulate 3: groups of 3 and 2 batches, i.e. the batches of 6 and 4
    images that batch_size 6 gives; the weights after two epochs are the same."""
    accumulated = train_spec(with_train(accumulate=3), tmp_path / "accumulated")
    large = train_spec(with_batch(CLASSIFIER, 6), tmp_path / "large")
    assert accumulated.steps == large.steps == 4
    weights = load_checkpoint(tmp_path / "accumulated" / "last.pt")["model"]
    reference = load_checkpoint(tmp_path / "large" / "last.pt")["model"]
    assert weights.keys() == reference.keys()
    for key in weights:
        torch.testing.assert_close(weights[key], reference[key], rtol=1e-5, atol=1e-6, msg=key)
    initial = train_spec(with_train(epochs=1, optimizer={"type": "sgd", "lr": 1e-12}), tmp_path / "still")
    assert initial.steps == 5
    still = load_checkpoint(tmp_path / "still" / "last.pt")["model"]
    assert any(not torch.allclose(weights[key], still[key]) for key in weights), "the test must move weights"


def test_weights_average_follows_the_decay_formula() -> None:
    """The average of a Linear + BatchNorm model after three updates, by hand (decay 0.5, ramp 4)."""
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    average = WeightsAverage(model, EmaSpec(decay=0.5, ramp_steps=4.0))
    snapshots = []
    for value in (1.0, 2.0, 4.0):
        with torch.no_grad():
            for tensor in (*model.parameters(), model[1].running_mean):
                tensor.fill_(value)
            model[1].num_batches_tracked.fill_(int(value))
        average.update(model)
        snapshots.append(value)
    expected = snapshots[0]  # the first update copies
    for updates, value in enumerate(snapshots[1:], start=2):
        decay = 0.5 * (1 - math.exp(-updates / 4.0))
        expected = decay * expected + (1 - decay) * value
    assert ema_decay(2, 0.5, 4.0) == pytest.approx(0.5 * (1 - math.exp(-0.5)))
    assert average.updates == 3
    for tensor in (*average.module.parameters(), average.module[1].running_mean):
        torch.testing.assert_close(tensor, torch.full_like(tensor, expected))
    assert int(average.module[1].num_batches_tracked) == 4
    assert all(not p.requires_grad for p in average.module.parameters())


def test_resume_with_ema_and_accumulation_reproduces_the_uninterrupted_run(tmp_path: Path) -> None:
    """Two epochs then --resume to four equal four epochs: trained weights, the average, its
    update count and every logged loss (constant schedule: epochs only bound the run)."""
    options = {"ema": {"decay": 0.9, "ramp_steps": 2.0}, "accumulate": 2}
    whole = tmp_path / "whole"
    train_spec(with_train(epochs=4, **options), whole)
    split = tmp_path / "split"
    train_spec(with_train(epochs=2, **options), split)
    summary = train_spec(with_train(epochs=4, **options), split, resume=True)
    assert summary.steps == 12  # 5 batches per epoch in groups of 2, 2 and 1
    finished, resumed = load_checkpoint(whole / "last.pt"), load_checkpoint(split / "last.pt")
    assert finished["ema_updates"] == resumed["ema_updates"] == 12
    for entry in ("model", "train_model"):
        for key, value in finished[entry].items():
            torch.testing.assert_close(resumed[entry][key], value, rtol=0, atol=0, msg=f"{entry}.{key}")
    assert any(
        not torch.equal(finished["model"][key], finished["train_model"][key]) for key in finished["model"]
    ), "the evaluated average must differ from the trained weights"
    assert [(r["step"], r["loss"]) for r in records(split, "train")] == [
        (r["step"], r["loss"]) for r in records(whole, "train")
    ]
    assert [r["metrics"]["accuracy"] for r in records(split, "val")] == [
        r["metrics"]["accuracy"] for r in records(whole, "val")
    ]


def test_resume_refuses_to_add_ema_to_a_run_saved_without_it(tmp_path: Path) -> None:
    train_spec(with_train(epochs=1), tmp_path / "run")
    with pytest.raises(ToolkitError, match=r"without train\.ema"):
        train_spec(with_train(epochs=2, ema={"decay": 0.9}), tmp_path / "run", resume=True)


@pytest.fixture(scope="module")
def adam_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch AdamW run with EMA that also writes best.safetensors."""
    run = tmp_path_factory.mktemp("lean") / "run"
    spec = with_train(
        epochs=1, optimizer={"type": "adamw", "lr": 1e-3}, ema={"decay": 0.9}, save_safetensors=True
    )
    train_spec(spec, run)
    return run


def test_best_checkpoint_holds_only_weights_spec_and_metrics(adam_run: Path) -> None:
    best = torch.load(adam_run / "best.pt", weights_only=True)
    last = torch.load(adam_run / "last.pt", weights_only=True)
    assert set(best) == {
        "format", "model", "spec", "epoch", "step", "best_metric", "best_value", "metrics", "category_ids"
    }  # fmt: skip
    assert {"optimizer", "scheduler", "scaler", "rng", "train_model", "ema_updates"} <= set(last)
    assert best["metrics"]["accuracy"] == best["best_value"] and best["best_metric"] == "accuracy"
    for key, value in best["model"].items():  # both hold the evaluated weights: the average
        assert torch.equal(value, last["model"][key]), key
    size_best, size_last = (adam_run / "best.pt").stat().st_size, (adam_run / "last.pt").stat().st_size
    # last.pt: weights, trained weights and AdamW's two moments: about four times best.pt
    assert size_best < 0.3 * size_last, (size_best, size_last)


def test_safetensors_file_loads_as_the_same_model(adam_run: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(adam_run / "best.safetensors"), framework="pt") as handle:
        metadata = handle.metadata()
    assert json.loads(metadata["spec"])["model"]["class_names"] == ["absent", "present"]
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(FIXTURE_PLUGINS))
        manager = PluginManager()
        from_pt = toolkit.load_model(adam_run / "best.pt", plugins=manager)
        from_safetensors = toolkit.load_model(adam_run / "best.safetensors", plugins=manager)
    for key, value in from_pt.state_dict().items():
        assert torch.equal(value, from_safetensors.state_dict()[key]), key
    generator = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=generator)]
    assert from_pt.predict(images)[0]["label"] == from_safetensors.predict(images)[0]["label"]


def test_eval_reads_the_safetensors_file_like_best_pt(
    adam_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from toolkit.cli import main

    printed = []
    for name in ("best.pt", "best.safetensors"):
        with pytest.MonkeyPatch.context() as patch:
            patch.syspath_prepend(str(FIXTURE_PLUGINS))
            capsys.readouterr()
            assert main(["eval", str(adam_run / name), "--json", "--no-progress"]) == 0
            printed.append(json.loads(capsys.readouterr().out))
    assert printed[0] == printed[1] and "accuracy" in printed[0]


def test_foreign_or_damaged_safetensors_files_are_clear_errors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"weight": torch.zeros(2)}, str(plain))
    with pytest.raises(ToolkitError, match="without a toolkit spec"):
        load_checkpoint(plain)
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ToolkitError, match="damaged"):
        load_checkpoint(damaged)


def test_a_training_run_feeds_every_logger_and_survives_a_failing_one(tmp_path: Path) -> None:
    """`toolkit train` with jsonl, csv, tensorboard and a third-party logger (installed by its entry
    point) that fails at epoch 2: one warning, the run finishes, the others hold every epoch."""
    import textwrap

    from conftest import run_cli, write_distribution
    from test_loggers import ACME, read_events

    site = write_distribution(tmp_path / "site", "acme-logger", {"acme": "acme_logger"}, "2.0")
    (site / "acme_logger.py").write_text(textwrap.dedent(ACME))
    spec = copy.deepcopy(CLASSIFIER)
    spec["train"].update(
        epochs=3, loggers=["jsonl", "csv", "tensorboard", {"type": "acme", "fail_at_epoch": 2}]
    )
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(spec))
    run = tmp_path / "run"
    result = run_cli(
        "train", str(path), "--out", str(run), "--no-progress", pythonpath=[FIXTURE_PLUGINS, site]
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("logger 'acme'") == 1 and "tracking server unreachable" in result.stderr
    assert (run / "acme.txt").read_text().splitlines() == [
        *(f"train {step}" for step in range(1, 6)),
        "val 5",
        "epoch 5",
    ]
    rows = (run / "results.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,seconds,lr,train/")
    assert [row.split(",")[:2] for row in rows[1:]] == [["1", "5"], ["2", "10"], ["3", "15"]]
    assert "accuracy" in rows[0].split(",")
    events = read_events(run / "tensorboard")
    assert [event.step for event in events.Scalars("val/accuracy")] == [5, 10, 15]
    accuracy = [r["metrics"]["accuracy"] for r in records(run, "val")]
    assert [event.value for event in events.Scalars("val/accuracy")] == pytest.approx(accuracy)
    assert {"confusion", "val_predictions", "curves"} <= set(events.Tags()["images"])


def test_plots_false_writes_the_figures_but_no_pictures(tmp_path: Path) -> None:
    summary = train_spec(with_train(plots=False), tmp_path / "run")
    assert not list((tmp_path / "run").glob("*.png")), "no curves, confusion or prediction grid"
    assert "accuracy" in summary.final_metrics and records(tmp_path / "run", "val")
    train_spec(CLASSIFIER, tmp_path / "plotted")
    assert {p.name for p in (tmp_path / "plotted").glob("*.png")} >= {"curves.png", "val_predictions.png"}


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_the_fused_optimizer_steps_like_the_reference_loop(
    optimizer: str, fixture_plugins_on_path: Path
) -> None:
    """build_optimizer fuses Adam(W) (SGD: foreach) on the CPU; the updates equal torch's for-loop ones."""
    from toolkit.engine.optim import build_optimizer

    torch.manual_seed(0)
    # no conv bias before the BatchNorm: its true gradient is 0, so what backward gives is rounding
    # noise that Adam scales up to full lr-sized steps, differently in two runs of the same maths
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.rand(2, 3, 8, 8))
    reference = copy.deepcopy(model)
    spec = load_spec(
        {**CLASSIFIER, "train": {**CLASSIFIER["train"], "optimizer": {"type": optimizer, "lr": 0.01}}}
    )
    fused = build_optimizer(model, spec.train)
    assert fused.defaults["fused" if optimizer != "sgd" else "foreach"] is True
    groups = [
        {**g, "params": [dict(reference.named_parameters())[n] for n in _names(model, g)]}
        for g in fused.param_groups
    ]
    loop_type = type(fused)
    loop = loop_type(
        [{k: v for k, v in g.items() if k not in ("fused", "foreach")} for g in groups], foreach=False
    )
    for _ in range(3):
        images = torch.rand(4, 3, 8, 8)
        for net, opt in ((model, fused), (reference, loop)):
            opt.zero_grad()
            net(images).square().mean().backward()
            opt.step()
    for (name, a), b in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def _names(model: nn.Module, group: dict[str, Any]) -> list[str]:
    ids = {id(p) for p in group["params"]}
    return [name for name, p in model.named_parameters() if id(p) in ids]
