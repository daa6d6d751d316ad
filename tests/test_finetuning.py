"""Fine-tuning through the trainer: frozen stages stay put, unfreeze_at_epoch releases them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from toolkit.engine.trainer import train
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(123)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def spec_for(weights: Path, **train: object):  # type: ignore[no-untyped-def]
    return load_spec(
        {
            "model": {
                "backbone": {"type": "resnet18", "pretrained": str(weights), "frozen_stages": 2},
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
            "train": {"epochs": 2, "optimizer": {"type": "sgd", "lr": 0.1}, "device": "cpu", **train},
        },
        plugins=PluginManager(),
    )


def backbone_after(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "last.pt", weights_only=True)["model"]
    return {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}


FROZEN = ("conv1.", "bn1.", "layer1.", "layer2.")


def test_frozen_stages_do_not_move(weights: Path, tmp_path: Path) -> None:
    summary = train(spec_for(weights), out_dir=tmp_path / "run", show_progress=False)
    initial = torch.load(weights, weights_only=True)
    final = backbone_after(tmp_path / "run")
    frozen = [k for k in final if k.startswith(FROZEN)]
    assert frozen and all(torch.equal(final[k], initial[k]) for k in frozen), "incl. BN running stats"
    assert not torch.equal(final["layer4.0.conv1.weight"], initial["layer4.0.conv1.weight"])
    assert summary.frozen_parameters == sum(
        initial[k].numel() for k in frozen if "running" not in k and "num_batches" not in k
    )


def test_unfreeze_at_epoch_releases_the_backbone(weights: Path, tmp_path: Path) -> None:
    summary = train(spec_for(weights, unfreeze_at_epoch=1), out_dir=tmp_path / "run", show_progress=False)
    initial = torch.load(weights, weights_only=True)
    final = backbone_after(tmp_path / "run")
    assert not torch.equal(final["conv1.weight"], initial["conv1.weight"])
    assert not torch.equal(final["layer1.0.conv1.weight"], initial["layer1.0.conv1.weight"])
    assert summary.frozen_parameters == 0
