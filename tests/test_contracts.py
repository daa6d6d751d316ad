"""Contracts written once: protocols checked at build, input multiples from the model, docs cover them."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import FIXTURE_PLUGINS, REPO, run_cli

from toolkit.build import build_model
from toolkit.contracts import (
    OPTIONAL_PROTOCOLS,
    PROTOCOLS,
    FeatureInfo,
    Freezable,
    HasLevels,
    missing_members,
    protocol_members,
)
from toolkit.errors import PluginError, ToolkitError
from toolkit.kinds import HOOK_FOR_KIND, KIND_TABLE
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
    assert protocol_members(PROTOCOLS["backbone"]) == ["out_channels", "stride", "__call__"]
    assert set(protocol_members(PROTOCOLS["task"])) >= {
        "name",
        "results",
        "evaluator",
        "draw",
        "lower_is_better",
    }
    assert missing_members(object(), PROTOCOLS["loss"]) == ["__call__ (the object is not callable)"]


def test_the_kind_table_is_the_one_source() -> None:
    manager = PluginManager(use_entry_points=False)
    assert list(manager.registries) == [kind.name for kind in KIND_TABLE]
    assert set(PROTOCOLS) == {kind.name for kind in KIND_TABLE}
    for kind in KIND_TABLE:
        assert manager.registry(kind.name).injected == frozenset(kind.injected)


def test_every_hook_and_protocol_member_is_documented() -> None:
    text = (REPO / "docs" / "plugins.md").read_text()
    documented = set(re.findall(r"`([A-Za-z_][A-Za-z_0-9]*)", text))
    missing = [hook for hook in HOOK_FOR_KIND.values() if hook not in documented]
    for protocol in [*PROTOCOLS.values(), *(p for group in OPTIONAL_PROTOCOLS.values() for p in group)]:
        missing += [
            f"{protocol.__name__}.{member}"
            for member in protocol_members(protocol)
            if member != "__call__" and member not in documented
        ]
        if protocol.__name__ not in documented:
            missing.append(protocol.__name__)
    assert not missing, f"document these in docs/plugins.md: {missing}"
