"""Bad specs through the real CLI: exit code 2, the path, a suggestion where one exists, no traceback."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import run_cli

GOOD_MODEL = """
model:
  backbone: {type: resnet18, frozen_stages: 1}
  head: {type: centernet, head_conv: 64}
  input_size: [128, 128]
  class_names: [cat, dog]
"""


def spec_with(model_lines: str) -> str:
    return "model:\n" + textwrap.indent(textwrap.dedent(model_lines).strip(), "  ") + "\n"


BASE = dict(
    backbone="backbone: {type: resnet18}",
    head="head: {type: centernet}",
    input_size="input_size: 128",
    class_names="class_names: [cat, dog]",
)


def model_spec(**replace: str | None) -> str:
    parts = {**BASE, **replace}
    return spec_with("\n".join(v for v in parts.values() if v is not None))


# (id, spec text, expected fragments of stderr)
BAD_SPECS: list[tuple[str, str, list[str]]] = [
    (
        "head-field-typo",
        model_spec(head="head: {type: centernet, head_con: 32}"),
        ["model.head.head_con: unknown field (did you mean head_conv?)"],
    ),
    (
        "injected-field-typo",
        model_spec(head="head: {type: centernet, num_clases: 3}"),
        ["model.head.num_clases: unknown field (did you mean num_classes?", "model.class_names"],
    ),
    (
        "backbone-field-typo",
        model_spec(backbone="backbone: {type: resnet18, frozen_stage: 2}"),
        ["model.backbone.frozen_stage: unknown field (did you mean frozen_stages?)"],
    ),
    (
        "unknown-backbone",
        model_spec(backbone="backbone: {type: resnet19}"),
        ["model.backbone.type: unknown backbone 'resnet19' (did you mean resnet18", "toolkit plugins"],
    ),
    (
        "unknown-head",
        model_spec(head="head: {type: centrenet}"),
        ["model.head.type: unknown head 'centrenet' (did you mean centernet?)"],
    ),
    (
        "missing-type",
        model_spec(backbone="backbone: {frozen_stages: 1}"),
        ["model.backbone.type: missing 'type'", "resnet18, resnet50"],
    ),
    (
        "backbone-not-mapping",
        model_spec(backbone="backbone: resnet18"),
        ["model.backbone: expected a mapping, got 'resnet18'"],
    ),
    (
        "frozen-out-of-range",
        model_spec(backbone="backbone: {type: resnet18, frozen_stages: 7}"),
        ["model.backbone.frozen_stages: Input should be less than or equal to 4 (got 7)"],
    ),
    (
        "frozen-wrong-type",
        model_spec(backbone="backbone: {type: resnet50, frozen_stages: two}"),
        ["model.backbone.frozen_stages: Input should be a valid integer", "'two'"],
    ),
    (
        "norm-eval-not-bool",
        model_spec(backbone="backbone: {type: resnet18, norm_eval: maybe}"),
        ["model.backbone.norm_eval: Input should be a valid boolean"],
    ),
    (
        "pretrained-missing-file",
        model_spec(backbone="backbone: {type: resnet18, pretrained: nowhere.pt}"),
        ["model.backbone.pretrained:", "'nowhere.pt' is not a file"],
    ),
    (
        "dropout-out-of-range",
        model_spec(head="head: {type: classification, dropout: 1.5}"),
        ["model.head.dropout: Input should be less than 1"],
    ),
    (
        "neck-empty",
        model_spec(head="head: {type: centernet, neck_channels: []}"),
        ["model.head.neck_channels: Tuple should have at least 1 item"],
    ),
    (
        "max-detections-zero",
        model_spec(head="head: {type: centernet, max_detections: 0}"),
        ["model.head.max_detections: Input should be greater than or equal to 1"],
    ),
    (
        "input-not-multiple",
        model_spec(input_size="input_size: 250"),
        ["model.input_size: each side must be a multiple of 32", "use 224 or 256"],
    ),
    ("input-one-side", model_spec(input_size="input_size: [512]"), ["model.input_size"]),
    (
        "input-negative",
        model_spec(input_size="input_size: [-32, 64]"),
        ["model.input_size.0: Input should be greater than or equal to 8"],
    ),
    (
        "no-classes",
        model_spec(class_names="class_names: []"),
        ["model.class_names: List should have at least 1 item"],
    ),
    (
        "duplicate-class",
        model_spec(class_names="class_names: [cat, cat]"),
        ["model.class_names: class name 'cat' appears twice"],
    ),
    ("missing-classes", model_spec(class_names=None), ["model.class_names: required field is missing"]),
    ("missing-model", "plugins: []\n", ["model: required field is missing"]),
    (
        "section-typo",
        GOOD_MODEL.replace("model:", "modle:"),
        ["modle: unknown field (did you mean model?)", "model: required field is missing"],
    ),
    ("bad-yaml", "model:\n  backbone: {type: resnet18\n  head: x\n", ["invalid YAML at line"]),
    ("duplicate-key", GOOD_MODEL + "model:\n  input_size: 64\n", ["duplicate key 'model'"]),
    ("not-a-mapping", "- model\n- data\n", ["must be a mapping of sections, got list"]),
    ("empty-file", "# nothing here\n", ["the spec is empty"]),
    ("plugins-not-list", "plugins: toolkit_mobilenet\n" + GOOD_MODEL, ["plugins: must be a list"]),
    (
        "optimizer-without-type",
        GOOD_MODEL + "train:\n  optimizer: {lr: 0.1}\n",
        ["train.optimizer.type: missing 'type': one of adam, adamw, sgd"],
    ),
    (
        "flat-key",
        GOOD_MODEL + "epochs: 3\n",
        ["epochs: unknown field (did you mean train.epochs?)"],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [case[1:] for case in BAD_SPECS], ids=[c[0] for c in BAD_SPECS]
)
def test_bad_spec_exits_2_with_path_and_hint(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    result = run_cli("validate", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for fragment in expected:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr}"


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(
        model_spec(
            backbone="backbone: {type: resnet18, frozen_stages: 9}",
            head="head: {type: centernet, head_con: 3}",
            input_size="input_size: 100",
        )
    )
    result = run_cli("validate", str(path))
    assert result.returncode == 2
    assert "3 problems in the spec" in result.stderr
    for path_text in ("model.backbone.frozen_stages", "model.head.head_con", "model.input_size"):
        assert path_text in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["validate", "missing.yaml"], "spec file 'missing.yaml' not found"),
        (["validate", "configs/centernet_resnet18.yaml", "model.input_size"], "must look like key.sub=value"),
        (["validate", "configs/centernet_resnet18.yaml", "model.input_size=[1, "], "not valid YAML"),
        (
            ["validate", "configs/centernet_resnet18.yaml", "model.class_names.9=x"],
            "not an index of a list of 8",
        ),
        (
            ["validate", "configs/centernet_resnet18.yaml", "model.input_size=__import__('os')"],
            "model.input_size",
        ),
        (
            ["build", "configs/centernet_resnet18.yaml", "model.head.type=centernett"],
            "did you mean centernet",
        ),
    ],
)
def test_bad_arguments_exit_2(args: list[str], expected: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_json_spec(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text('{"model": {"backbone": }')
    result = run_cli("validate", str(path))
    assert result.returncode == 2
    assert "invalid JSON at line 1" in result.stderr


def test_json_spec_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(
        '{"model": {"backbone": {"type": "resnet50"}, "head": {"type": "classification"},'
        ' "input_size": [64, 96], "class_names": ["absent", "present"]}}'
    )
    result = run_cli("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert "resnet50 + classification, 2 classes, input 64x96" in result.stdout
