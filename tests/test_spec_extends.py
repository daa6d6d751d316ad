"""Spec inheritance (`extends`) and hints for flat keys (`epochs=3` -> train.epochs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli

from toolkit.plugins import PluginManager
from toolkit.spec import SpecError, load_spec, merged_spec, merged_spec_text
from toolkit.spec.extends import MAX_CHAIN, deep_merge
from toolkit.spec.files import SpecFileError

MODEL = {
    "backbone": {"type": "resnet18", "frozen_stages": 1, "norm_eval": True},
    "head": {"type": "centernet", "neck_channels": [64, 64, 64], "head_conv": 64},
    "input_size": [128, 128],
    "class_names": ["a", "b", "c"],
}
TRAIN = {"epochs": 4, "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.8}, "warmup_steps": 10}


@pytest.fixture(scope="module")
def manager() -> PluginManager:
    return PluginManager()


def _write(path: Path, data: dict | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def _chain(tmp_path: Path) -> Path:
    """base/model.yaml <- base/train.yaml <- experiments/run.yaml (paths relative to each file)."""
    _write(tmp_path / "base" / "model.yaml", {"model": MODEL})
    _write(tmp_path / "base" / "train.yaml", {"extends": "model.yaml", "train": TRAIN})
    return _write(
        tmp_path / "experiments" / "run.yaml",
        {
            "extends": "../base/train.yaml",
            "model": {
                "backbone": {"frozen_stages": 0},  # same type: merged key by key
                "head": {"neck_channels": [32, 32, 32]},  # lists replace
                "class_names": ["x", "y"],
            },
            "train": {"optimizer": {"type": "adamw", "lr": 0.002}},  # another type: replaced whole
        },
    )


def test_a_chain_merges_mappings_and_replaces_lists_and_other_types(tmp_path: Path) -> None:
    merged = merged_spec(_chain(tmp_path))
    assert merged == {
        "model": {
            "backbone": {"type": "resnet18", "frozen_stages": 0, "norm_eval": True},
            "head": {"type": "centernet", "neck_channels": [32, 32, 32], "head_conv": 64},
            "input_size": [128, 128],
            "class_names": ["x", "y"],
        },
        "train": {"epochs": 4, "optimizer": {"type": "adamw", "lr": 0.002}, "warmup_steps": 10},
    }


def test_load_spec_validates_the_merged_chain_then_overrides(tmp_path: Path, manager: PluginManager) -> None:
    path = _chain(tmp_path)
    spec = load_spec(path, ["train.epochs=2", "model.head.head_conv=32"], plugins=manager)
    assert spec.source == str(path)
    assert spec.train.epochs == 2 and spec.train.warmup_steps == 10
    assert spec.train.optimizer.type == "adamw" and spec.train.optimizer.lr == 0.002
    assert spec.model.backbone.frozen_stages == 0 and spec.model.head.head_conv == 32
    assert spec.model.head.neck_channels == (32, 32, 32)
    assert "extends" not in spec.model_dump()


def test_merged_spec_text_is_the_merged_yaml(tmp_path: Path) -> None:
    path = _chain(tmp_path)
    text = merged_spec_text(path, ["train.epochs=7"])
    assert "extends" not in text
    data = yaml.safe_load(text)
    assert data["train"]["epochs"] == 7 and data == merged_spec(path, ["train.epochs=7"])
    assert list(data) == ["model", "train"]  # the base's order first


def test_json_spec_extends_a_yaml_base(tmp_path: Path, manager: PluginManager) -> None:
    _write(tmp_path / "base.yaml", {"model": MODEL})
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"extends": "base.yaml", "model": {"input_size": 96}}))
    assert load_spec(path, plugins=manager).model.input_size == (96, 96)


def test_a_mapping_extends_relative_to_the_working_folder(
    tmp_path: Path, manager: PluginManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "base.yaml", {"model": MODEL})
    monkeypatch.chdir(tmp_path)
    spec = load_spec({"extends": "base.yaml", "model": {"class_names": ["only", "two"]}}, plugins=manager)
    assert spec.model.class_names == ["only", "two"] and spec.model.input_size == (128, 128)


def test_deep_merge_rules() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "opt": {"type": "sgd", "momentum": 0.9}, "keep": 1}
    child = {"a": {"c": [3]}, "opt": {"type": "adam"}, "new": None}
    assert deep_merge(base, child) == {
        "a": {"b": 1, "c": [3]},
        "opt": {"type": "adam"},
        "keep": 1,
        "new": None,
    }
    assert deep_merge(base, {"opt": {"momentum": 0.5}})["opt"] == {"type": "sgd", "momentum": 0.5}
    assert base["a"] == {"b": 1, "c": [1, 2]}, "the base is not modified"


# -- errors ----------------------------------------------------------------------------------------
def test_a_cycle_names_the_chain(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", {"extends": "b.yaml", "model": MODEL})
    _write(tmp_path / "b.yaml", {"extends": "sub/c.yaml"})
    _write(tmp_path / "sub" / "c.yaml", {"extends": "../a.yaml"})
    with pytest.raises(SpecFileError) as info:
        merged_spec(tmp_path / "a.yaml")
    message = str(info.value)
    assert "extends '../a.yaml', a cycle" in message
    assert f"{tmp_path / 'a.yaml'} -> {tmp_path / 'b.yaml'} -> {tmp_path / 'sub' / 'c.yaml'} -> " in message


def test_a_file_extending_itself_through_the_cli(tmp_path: Path) -> None:
    path = _write(tmp_path / "self.yaml", {"extends": "./self.yaml", "model": MODEL})
    result = run_cli("validate", str(path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr == (
        f"toolkit: error: {path}: extends './self.yaml', a cycle "
        f"(chain: {path} -> {tmp_path / '.' / 'self.yaml'}); remove one extends\n"
    )


def test_a_missing_base_names_the_chain_through_the_cli(tmp_path: Path) -> None:
    _write(tmp_path / "middle.yaml", {"extends": "gone/base.yaml"})
    path = _write(tmp_path / "top.yaml", {"extends": "middle.yaml", "model": MODEL})
    result = run_cli("validate", str(path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr == (
        f"toolkit: error: {tmp_path / 'middle.yaml'}: extends 'gone/base.yaml', which is not a file "
        f"(chain: {path} -> {tmp_path / 'middle.yaml'} -> {tmp_path / 'gone' / 'base.yaml'}); "
        "check the path\n"
    )


@pytest.mark.parametrize(
    ("extends", "expected"),
    [
        (3, "extends must be the path of a spec file (relative to this file), got 3"),
        ("", "extends must be the path of a spec file"),
        (["a.yaml"], "got ['a.yaml']"),
        (".", "which is not a file (it is a directory)"),
    ],
)
def test_bad_extends_values(tmp_path: Path, extends: object, expected: str) -> None:
    path = _write(tmp_path / "spec.yaml", {"extends": extends, "model": MODEL})
    with pytest.raises(
        SpecFileError, match=expected.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        merged_spec(path)


def test_a_chain_is_bounded(tmp_path: Path) -> None:
    for index in range(MAX_CHAIN + 2):
        _write(tmp_path / f"s{index}.yaml", {"extends": f"s{index + 1}.yaml"})
    _write(tmp_path / f"s{MAX_CHAIN + 2}.yaml", {"model": MODEL})
    with pytest.raises(SpecFileError, match=f"an extends chain of more than {MAX_CHAIN} files"):
        merged_spec(tmp_path / "s0.yaml")


def test_an_invalid_base_is_reported_as_that_file(tmp_path: Path) -> None:
    _write(tmp_path / "base.yaml", "model: [unclosed\n")
    path = _write(tmp_path / "spec.yaml", {"extends": "base.yaml"})
    with pytest.raises(SpecFileError, match=f"{tmp_path / 'base.yaml'}: invalid YAML at line 2"):
        merged_spec(path)


def test_shipped_configs_extend_their_bases(manager: PluginManager) -> None:
    resnet18 = load_spec(REPO / "configs/centernet_resnet18.yaml", plugins=manager).model_dump(mode="json")
    resnet50 = load_spec(REPO / "configs/centernet_resnet50.yaml", plugins=manager).model_dump(mode="json")
    assert resnet50["model"]["backbone"]["type"] == "resnet50"
    assert resnet50["model"]["backbone"]["frozen_stages"] == 1
    assert {k: v for k, v in resnet50["model"].items() if k != "backbone"} == {
        k: v for k, v in resnet18["model"].items() if k != "backbone"
    }
    shapes = load_spec(REPO / "configs/classifier_resnet18_shapes.yaml", plugins=manager)
    assert shapes.model.backbone.frozen_stages == 0 and shapes.model.backbone.norm_eval is True
    assert shapes.model.head.dropout == 0.1 and shapes.model.class_names == ["absent", "present"]


# -- flat keys -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("epochs=3", "epochs: unknown field (did you mean train.epochs?)"),
        ("lr=1e-3", "lr: unknown field (did you mean train.optimizer.lr or attack.method.lr?)"),
        ("batch_size=8", "batch_size: unknown field (did you mean data.batch_size or attack.batch_size?)"),
    ],
)
def test_flat_overrides_get_the_full_path_through_the_cli(override: str, expected: str) -> None:
    result = run_cli("validate", "configs/centernet_resnet18_shapes.yaml", override)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"  {expected}\n" in result.stderr


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["train.lr=0.01"], ["train.lr: unknown field (did you mean train.optimizer.lr?)"]),
        (["frozen_stages=2"], ["frozen_stages: unknown field (did you mean model.backbone.frozen_stages?)"]),
        (
            ["model.frozen_stages=2"],
            ["model.frozen_stages: unknown field (did you mean model.backbone.frozen_stages?)"],
        ),
        (["seed=1"], ["seed: unknown field (did you mean data.seed or train.seed?)"]),
        (["epoch=3"], ["epoch: unknown field (did you mean train.epochs?)"]),
        (["modle.input_size=64"], ["modle: unknown field (did you mean model?)"]),
    ],
)
def test_flat_keys_in_specs_and_overrides(
    manager: PluginManager, overrides: list[str], expected: list[str]
) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(REPO / "configs/centernet_resnet18_shapes.yaml", overrides, plugins=manager)
    assert [str(issue) for issue in info.value.issues] == expected


def test_a_flat_key_in_a_file(tmp_path: Path, manager: PluginManager) -> None:
    path = _write(tmp_path / "spec.yaml", {"model": MODEL, "epochs": 3, "train": {"lr": 0.1}})
    with pytest.raises(SpecError) as info:
        load_spec(path, plugins=manager)
    assert sorted(str(issue) for issue in info.value.issues) == [
        "epochs: unknown field (did you mean train.epochs?)",
        "train.lr: unknown field (did you mean train.optimizer.lr?)",
    ]
