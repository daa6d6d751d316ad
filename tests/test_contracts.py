"""Contracts written once: protocols checked at build, input multiples from the model, docs cover them."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import FIXTURE_PLUGINS, REPO, run_cli

from toolkit.build import build_model
from toolkit.contracts import (
    FeatureInfo,
    Freezable,
    HasLevels,
    missing_members,
    protocol_members,
)
from toolkit.errors import PluginError, ToolkitError
from toolkit.kinds import BACKBONE, HOOK_FOR_KIND, KIND_TABLE, LOSS, TASK
from toolkit.plugins import PluginManager

pytestmark = pytest.mark.usefixtures("fixture_plugins_on_path")


def spec_with(backbone: dict, input_size: int | list[int] = 64, head: dict | None = None) -> dict:
    return {
        "plugins": ["fixture_tiny"],
        "model": {
            "backbone": backbone,
            "head": head or {"type": "centernet", "neck_channels": [8, 8, 8], "head_conv": 8},
            "input_size": input_size,
            "class_names": ["a", "b"],
        },
    }


def test_a_backbone_missing_a_member_fails_at_build_naming_member_component_and_plugin() -> None:
    with pytest.raises(PluginError) as info:
        build_model(spec_with({"type": "no_stride"}), plugins=PluginManager(modules=["fixture_tiny"]))
    message = str(info.value)
    assert "backbone 'no_stride'" in message and "plugin 'fixture_tiny'" in message
    assert "lacks stride" in message and "toolkit.contracts.Backbone" in message


def test_the_cli_reports_a_broken_contract_with_exit_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import yaml

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec_with({"type": "not_a_module"})))
    result = run_cli("build", str(path), pythonpath=[FIXTURE_PLUGINS])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "not a torch.nn.Module" in result.stderr and "fixture_tiny" in result.stderr


def test_a_head_naming_an_unregistered_task_is_refused() -> None:
    manager = PluginManager(modules=["fixture_tiny"])

    def orphan(in_channels: int, num_classes: int) -> torch.nn.Module:
        head = torch.nn.Conv2d(in_channels, num_classes, 1)
        head.task = "segmentation"  # type: ignore[assignment]
        head.decode = lambda outputs: outputs  # type: ignore[assignment]
        return head

    manager.registry("head").register("orphan", orphan)
    with pytest.raises(
        ToolkitError, match=r"head 'orphan' names task 'segmentation'.*classification, detection"
    ):
        build_model(spec_with({"type": "tiny"}, head={"type": "orphan"}), plugins=manager)


@pytest.mark.parametrize(
    ("backbone", "bad", "good", "multiple"),
    [("tiny16", 72, 80, 16), ("tiny64", 96, 128, 64), ("resnet18", 48, 64, 32)],
)
def test_validate_reports_an_input_size_that_does_not_fit_the_model(
    tmp_path, backbone: str, bad: int, good: int, multiple: int
) -> None:  # type: ignore[no-untyped-def]
    import yaml

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec_with({"type": backbone}, input_size=[good, bad])))
    result = run_cli("validate", str(path), pythonpath=[FIXTURE_PLUGINS])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"must be a multiple of {multiple}" in result.stderr and f"backbone '{backbone}'" in result.stderr
    assert f"got {bad}" in result.stderr
    path.write_text(yaml.safe_dump(spec_with({"type": backbone}, input_size=good)))
    valid = run_cli("validate", str(path), pythonpath=[FIXTURE_PLUGINS])
    assert valid.returncode == 0, valid.stderr
    assert f"multiple of {multiple})" in valid.stdout


def test_the_model_knows_its_input_multiple() -> None:
    manager = PluginManager(modules=["fixture_tiny"])
    assert build_model(spec_with({"type": "tiny16"}, 80), plugins=manager).input_multiple == 16
    assert build_model(spec_with({"type": "tiny64"}, 128), plugins=manager).input_multiple == 64
    resnet = build_model(spec_with({"type": "resnet18", "last_stride": 1}, 48), plugins=manager)
    assert resnet.input_multiple == 16
    assert isinstance(resnet.backbone, HasLevels) and isinstance(resnet.backbone, Freezable)
    assert resnet.backbone.levels == FeatureInfo([(64, 4), (128, 8), (256, 16), (512, 16)])
    assert resnet.backbone.levels.strides() == [4, 8, 16, 16]


def test_the_protocol_check_sees_every_member() -> None:
    assert protocol_members(BACKBONE.protocol) == ["out_channels", "stride", "__call__"]
    assert set(protocol_members(TASK.protocol)) >= {
        "name",
        "results",
        "evaluator",
        "draw",
        "lower_is_better",
    }
    assert missing_members(object(), LOSS.protocol) == ["__call__ (the object is not callable)"]


def test_the_kind_table_is_the_one_source() -> None:
    manager = PluginManager(use_entry_points=False)
    assert list(manager.registries) == [kind.name for kind in KIND_TABLE]
    for kind in KIND_TABLE:
        assert manager.registry(kind.name).injected == frozenset(kind.injected)


def test_every_hook_and_protocol_member_is_documented() -> None:
    text = (REPO / "docs" / "plugins.md").read_text()
    documented = set(re.findall(r"`([A-Za-z_][A-Za-z_0-9]*)", text))
    missing = [hook for hook in HOOK_FOR_KIND.values() if hook not in documented]
    protocols = dict.fromkeys(p for kind in KIND_TABLE for p in (kind.protocol, *kind.optional))
    for protocol in protocols:
        missing += [
            f"{protocol.__name__}.{member}"
            for member in protocol_members(protocol)
            if member != "__call__" and member not in documented
        ]
        if protocol.__name__ not in documented:
            missing.append(protocol.__name__)
    assert not missing, f"document these in docs/plugins.md: {missing}"


def test_pretrained_path_is_a_core_service_for_any_backbone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    manager = PluginManager(modules=["fixture_tiny"])
    torch.manual_seed(3)
    source = build_model(spec_with({"type": "tiny"}), plugins=manager)
    path = tmp_path / "tiny.pt"
    torch.save({"model": source.state_dict()}, path)  # a whole-model checkpoint: "backbone." keys
    loaded = build_model(spec_with({"type": "tiny", "pretrained": str(path)}), plugins=manager)
    for name, value in source.backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[name], value), name
    partial = tmp_path / "partial.pt"
    state = source.backbone.state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("8.")}, partial)
    with pytest.warns(UserWarning, match=r"partial\.pt.*2 tiny key\(s\) missing"):
        build_model(spec_with({"type": "tiny", "pretrained": str(partial)}), plugins=manager)


def test_the_model_normalizes_its_own_input() -> None:
    manager = PluginManager(modules=["fixture_tiny"])
    default = build_model(spec_with({"type": "resnet18"}), plugins=manager)
    assert default.normalization.mean == (0.485, 0.456, 0.406)  # the ResNet's declared statistics
    spec = spec_with({"type": "tiny"})
    spec["model"]["normalize"] = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    model = build_model(spec, plugins=manager)
    images = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(model.normalize(images), (images - 0.5) / 0.25)
    with torch.no_grad():
        expected = model.head(model.backbone((images - 0.5) / 0.25))
        for key, value in model(images).items():
            torch.testing.assert_close(value, expected[key])


def test_a_spec_that_still_normalizes_in_augment_is_told_where_it_went(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import yaml

    spec = spec_with({"type": "tiny"})
    spec["data"] = {
        "train": {"type": "shapes"},
        "augment": [{"type": "resize"}, {"type": "normalize", "mean": [0.5, 0.5, 0.5]}, {"type": "hflp"}],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = run_cli("validate", str(path), pythonpath=[FIXTURE_PLUGINS])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "2 problems" in result.stderr
    assert "data.augment.1.type: 'normalize' is no longer an augmentation" in result.stderr
    assert "model.normalize" in result.stderr
    assert "data.augment.2.type: unknown augmentation 'hflp' (did you mean hflip or vflip?)" in result.stderr
