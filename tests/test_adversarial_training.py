"""Adversarial training (`train.adversarial`): the first round(ratio * N) images of every batch are
the attack's examples, made with the model in eval mode; the rest stay clean; training runs."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from conftest import run_cli

from toolkit.build import Builder
from toolkit.engine.trainer import Trainer
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec

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
            "length": 8,
            "image_size": 32,
            "target": "circle",
            "seed": 1,
        },
        "augment": [{"type": "resize"}],
        "batch_size": 8,
        "num_workers": 0,
    },
    "train": {
        "epochs": 1,
        "device": "cpu",
        "threads": 2,
        "adversarial": {"attack": {"type": "pgd", "eps": 0.0314, "steps": 2}, "ratio": 0.5},
    },
}


def test_half_of_each_batch_is_adversarial_and_the_model_is_untouched(tmp_path: Path) -> None:
    manager = PluginManager()
    trainer = Trainer(
        load_spec(SPEC, plugins=manager), Builder(manager), out_dir=tmp_path / "run", show_progress=False
    )
    trainer._setup()  # the model, loaders and attack, without training
    trainer.model.train()
    batch = next(iter(trainer.train_loader))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    mixed = trainer._with_adversarial(batch.images, batch.targets)
    assert mixed.shape == batch.images.shape
    assert torch.equal(mixed[4:], batch.images[4:]), "the second half stays clean"
    delta = (mixed[:4] - batch.images[:4]).abs()
    assert 0 < delta.max() <= 0.0314 + 1e-6, "the first half is perturbed inside the eps ball"
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items()), "BN stats unchanged"
    assert trainer.model.training, "the model is back in training mode"
    assert all(p.grad is None for p in trainer.model.parameters())


def test_training_with_adversarial_examples_through_the_cli(tmp_path: Path) -> None:
    spec = tmp_path / "adv.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    result = run_cli("train", str(spec), "--out", str(tmp_path / "run"), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "best.pt").is_file()
    bad = run_cli("validate", str(spec), "train.adversarial.attack.type=fgsn")
    assert bad.returncode == 2 and "unknown attack 'fgsn' (did you mean fgsm?)" in bad.stderr
