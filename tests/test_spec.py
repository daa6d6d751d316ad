"""Spec loading: files, overrides (YAML scalars, never eval), the JSON Schema, the Python API."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import REPO

import toolkit
from toolkit.plugins import PluginManager
from toolkit.spec import SpecError, load_spec, merged_spec, spec_json_schema
from toolkit.spec.files import apply_overrides, parse_override

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def manager() -> PluginManager:
    return PluginManager()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_validate(path: Path, manager: PluginManager) -> None:
    spec = load_spec(path, plugins=manager)
    assert spec.source == str(path)
    assert spec.model.num_classes == len(spec.model.class_names) >= 1


def test_overrides_are_parsed_as_yaml_and_validated(manager: PluginManager) -> None:
    spec = load_spec(
        REPO / "configs/centernet_resnet18.yaml",
        [
            "model.input_size=256",
            "model.backbone.type=resnet50",
            "model.backbone.frozen_stages=2",
            "model.head.neck_channels=[128, 64, 32]",
            "model.class_names=[a, b, c]",
        ],
        plugins=manager,
    )
    assert spec.model.input_size == (256, 256)
    assert spec.model.backbone.type == "resnet50"
    assert spec.model.backbone.frozen_stages == 2
    assert spec.model.head.neck_channels == (128, 64, 32)
    assert spec.model.class_names == ["a", "b", "c"]


def test_override_values_are_never_evaluated() -> None:
    assert parse_override("model.head.type=__import__('os').getcwd()") == (
        ["model", "head", "type"],
        "__import__('os').getcwd()",
    )
    assert parse_override("a.b=1e-3") == (["a", "b"], 1e-3)
    assert parse_override("a.b=true") == (["a", "b"], True)
    assert parse_override("a.b=") == (["a", "b"], None)


def test_overrides_create_sections_and_index_lists() -> None:
    data = {"model": {"input_size": [64, 64]}}
    result = apply_overrides(data, ["model.input_size.1=96", "train.epochs=3"])
    assert result == {"model": {"input_size": [64, 96]}, "train": {"epochs": 3}}
    assert data == {"model": {"input_size": [64, 64]}}, "the input mapping is not modified"


def test_spec_error_lists_issues_with_paths(manager: PluginManager) -> None:
    raw = yaml.safe_load((REPO / "configs/centernet_resnet18.yaml").read_text())
    raw["model"]["head"]["max_detections"] = -1
    raw["model"]["backbone"]["type"] = "resnet"
    with pytest.raises(SpecError) as info:
        load_spec(raw, plugins=manager)
    paths = [issue.path for issue in info.value.issues]
    assert paths == ["model.backbone.type", "model.head.max_detections"]


def test_schema_covers_plugins_and_checks_configs(manager: PluginManager) -> None:
    schema = spec_json_schema(manager)
    jsonschema.Draft202012Validator.check_schema(schema)
    text = json.dumps(schema)
    for name in ("resnet18", "resnet50", "centernet", "classification", "frozen_stages", "head_conv"):
        assert name in text
    validator = jsonschema.Draft202012Validator(schema)
    for path in CONFIGS:  # as validation sees them: extends merged
        assert list(validator.iter_errors(merged_spec(path))) == []
    assert "extends" in schema["properties"]
    resnet = REPO / "configs" / "centernet_resnet18.yaml"
    bad = merged_spec(resnet)
    bad["model"]["backbone"]["frozen_stages"] = 9
    bad["model"]["head"]["unknown_key"] = 1
    assert len(list(validator.iter_errors(bad))) >= 2
    sizes = merged_spec(resnet)
    for good in (64, [64, 96]):  # one int (square) or [height, width], as the spec accepts
        sizes["model"]["input_size"] = good
        assert list(validator.iter_errors(sizes)) == [], good
    for wrong in ("64", [64], [64, 64, 64], 0):
        sizes["model"]["input_size"] = wrong
        assert list(validator.iter_errors(sizes)) != [], wrong


def test_python_api(manager: PluginManager) -> None:
    spec = toolkit.load_spec(
        str(REPO / "configs/classifier_resnet18.yaml"), ["model.input_size=64"], plugins=manager
    )
    assert isinstance(spec, toolkit.Spec)
    model = toolkit.build_model(spec, plugins=manager)
    assert model.task.name == "classification"
    assert model.class_names == ["absent", "present"]
