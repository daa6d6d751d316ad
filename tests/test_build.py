"""Models built from specs: forward and decode at several sizes, freezing through the spec."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO

from toolkit.build import build_model
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec

SIZES = [(64, 64), (96, 128), (128, 96)]


@pytest.fixture(scope="module")
def manager() -> PluginManager:
    return PluginManager()


@pytest.fixture(scope="module")
def centernet(manager: PluginManager) -> torch.nn.Module:
    torch.manual_seed(0)
    spec = load_spec(
        REPO / "configs/centernet_resnet18.yaml",
        ["model.head.max_detections=20", "model.head.neck_channels=[64, 32, 16]", "model.head.head_conv=16"],
        plugins=manager,
    )
    return build_model(spec, plugins=manager).eval()


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_centernet_forward_and_decode(centernet: torch.nn.Module, batch: int, size: tuple[int, int]) -> None:
    height, width = size
    images = torch.rand(batch, 3, height, width)
    with torch.no_grad():
        outputs = centernet(images)
    assert outputs["heatmap"].shape == (batch, 8, height // 4, width // 4)
    assert outputs["size"].shape == outputs["offset"].shape == (batch, 2, height // 4, width // 4)
    detections = centernet.decode(outputs)
    boxes, scores, labels = detections["boxes"], detections["scores"], detections["labels"]
    assert boxes.shape == (batch, 20, 4), "exactly max_detections (a constant K, as ONNX needs)"
    assert scores.shape == labels.shape == boxes.shape[:2]
    assert torch.all(scores[:, :-1] >= scores[:, 1:]), "sorted by score"
    assert torch.all((scores >= 0) & (scores <= 1))
    assert torch.all((boxes[..., 0] >= 0) & (boxes[..., 2] <= width))
    assert torch.all((boxes[..., 1] >= 0) & (boxes[..., 3] <= height))
    assert torch.all(boxes[..., 2] >= boxes[..., 0]) and torch.all(boxes[..., 3] >= boxes[..., 1])
    assert torch.all((labels >= 0) & (labels < 8))


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_classifier_forward_and_decode(manager: PluginManager, batch: int, size: tuple[int, int]) -> None:
    model = build_model(REPO / "configs/classifier_resnet18.yaml", plugins=manager).eval()
    images = torch.rand(batch, 3, *size)
    results = model.predict(images)
    assert len(results) == batch
    probs = torch.stack([r["probs"] for r in results])
    assert probs.shape == (batch, 2)
    torch.testing.assert_close(probs.sum(1), torch.ones(batch))
    assert [r["label"] for r in results] == probs.argmax(1).tolist()
    assert [r["class_name"] for r in results] == [model.class_names[r["label"]] for r in results]
    decoded = model.decode(model(torch.nn.functional.interpolate(images, size=(224, 224), mode="bilinear")))
    assert decoded["probs"].shape == (batch, 2)


def test_frozen_stages_from_the_spec_hold_through_training(manager: PluginManager) -> None:
    torch.manual_seed(0)
    spec = load_spec(
        REPO / "configs/centernet_resnet18.yaml",
        ["model.backbone.frozen_stages=2", "model.head.neck_channels=[32, 32, 32]", "model.head.head_conv=8"],
        plugins=manager,
    )
    model = build_model(spec, plugins=manager).train()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    frozen_prefixes = ("backbone.conv1.", "backbone.bn1.", "backbone.layer1.", "backbone.layer2.")
    assert frozen and all(name.startswith(frozen_prefixes) for name in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith("backbone.layer3."))
    stats = {
        n: b.clone() for n, b in model.named_buffers() if n.startswith(frozen_prefixes) and "running" in n
    }
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    trained_before = model.backbone.layer4[0].conv1.weight.detach().clone()
    for _ in range(2):
        outputs = model(torch.rand(2, 3, 64, 64))
        loss = sum(value.float().pow(2).mean() for value in outputs.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name, value in frozen.items():
        assert torch.equal(value, dict(model.named_parameters())[name]), name
    for name, value in stats.items():
        assert torch.equal(value, dict(model.named_buffers())[name]), name
    assert not torch.equal(trained_before, model.backbone.layer4[0].conv1.weight)


@pytest.mark.usefixtures("fixture_plugins_on_path")
def test_a_head_using_levels_needs_a_backbone_with_levels() -> None:
    """A third-party head that sets `uses_levels` without checking its `levels` argument."""
    from toolkit.errors import ToolkitError

    manager = PluginManager(modules=["fixture_tiny"])

    def levels_probe(in_channels: int, stride: int, num_classes: int, levels=None) -> torch.nn.Module:
        head = torch.nn.Identity()
        head.task, head.uses_levels, head.seen_levels = "detection", True, levels  # type: ignore[assignment]
        head.decode = lambda outputs: outputs  # type: ignore[assignment]
        return head

    manager.registry("head").register("levels_probe", levels_probe)
    spec = {
        "model": {
            "backbone": {"type": "tiny"},
            "head": {"type": "levels_probe"},
            "input_size": 64,
            "class_names": ["a"],
        }
    }
    with pytest.raises(ToolkitError, match="backbone 'tiny' offers none"):
        build_model(spec, plugins=manager)
    spec["model"]["backbone"] = {"type": "resnet18", "last_stride": 1}
    model = build_model(spec, plugins=manager)
    assert model.head.seen_levels == ((64, 4), (128, 8), (256, 16), (512, 16))
    features = model(torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape) for f in features] == [
        (1, 64, 16, 16),
        (1, 128, 8, 8),
        (1, 256, 4, 4),
        (1, 512, 4, 4),
    ]
