"""Hostile input, class 4: bounded parsing of spec files, overrides and annotation values.

Spec cases run `toolkit validate` (under a 2 GiB address-space limit, so an unbounded expansion
fails the test instead of the machine); annotation cases run `toolkit data stats`. Each must exit 2
with one error line naming the file (or field) and the problem, no traceback, and leave its folder
as it was. All cases of a batch share one driver process (tests/hostile_runner.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from hostile_runner import Case, Result, assert_refused, run_cases

GOOD = """\
model:
  backbone: {type: resnet18}
  head: {type: centernet, neck_channels: [16]}
  input_size: 64
  class_names: [thing]
data:
  train: {type: shapes, task: detection, length: 4, image_size: 64}
  augment: [{type: hflip, p: 0.5}, {type: resize}]
train:
  epochs: 1
  optimizer: {type: adamw, lr: 1.0e-3}
"""


def _laughs(levels: int = 9, width: int = 9) -> str:
    """The YAML billion laughs: `levels` anchors, each `width` aliases of the previous (~400 bytes)."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join([*lines, f"model: *a{levels - 1}"]) + "\n"


def _flow_laughs(levels: int = 9, width: int = 9) -> str:
    """The same in one line of flow YAML (an override value)."""
    items = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    items += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "{" + ", ".join(items) + "}"


def _nested_block(depth: int) -> str:
    return "".join(" " * level + "a:\n" for level in range(depth)) + " " * depth + "b: 1\n"


@dataclass
class SpecCase:
    text: str | bytes  # the spec file's content
    overrides: list[str] = field(default_factory=list)
    fragments: list[str] = field(default_factory=list)  # what the error must say
    suffix: str = ".yaml"


HUGE = "9" * 5000
JSON_GOOD = yaml.safe_load(GOOD)


def _json(**changes: object) -> str:
    data = json.loads(json.dumps(JSON_GOOD))
    data["train"]["optimizer"].update(changes)
    return json.dumps(data).replace('"@INF@"', "Infinity").replace('"@NAN@"', "NaN")


SPECS: dict[str, SpecCase] = {
    "yaml-billion-laughs": SpecCase(_laughs(), fragments=["invalid YAML", "more than 100000 values"]),
    "yaml-deep-flow-list": SpecCase("[" * 100_000, fragments=["nesting deeper than 64 levels"]),
    "yaml-deep-flow-mapping": SpecCase("{a: " * 100_000, fragments=["nesting deeper than 64 levels"]),
    "yaml-deep-block": SpecCase(_nested_block(300), fragments=["nesting deeper than 64 levels"]),
    "yaml-recursive-alias": SpecCase("model: &m [1, *m]\n", fragments=["refers to its own anchor"]),
    "yaml-merge-key": SpecCase(
        "base: &b {input_size: 64}\nmodel:\n  <<: *b\n", fragments=["merge keys (<<) are not supported"]
    ),
    "yaml-huge-int": SpecCase(
        GOOD.replace("input_size: 64", f"input_size: {HUGE}"), fragments=["integer of more than 40 digits"]
    ),
    "yaml-huge-hex": SpecCase(
        GOOD.replace("epochs: 1", "epochs: 0x" + "f" * 5000), fragments=["integer of more than 40 digits"]
    ),
    "yaml-list-as-key": SpecCase("? [a, b]\n: 1\n", fragments=["a key must be a scalar"]),
    "yaml-python-tag": SpecCase(
        'model: !!python/object/apply:os.system ["echo hi"]\n',
        fragments=["could not determine a constructor"],
    ),
    "yaml-not-utf8": SpecCase(b"\xff\xfe\x00m\x00o\x00d\x00e\x00l", fragments=["cannot read spec file"]),
    "yaml-too-large": SpecCase(GOOD + "#" * (1 << 21) + "\n", fragments=["larger than 1048576 bytes"]),
    "yaml-lr-inf": SpecCase(
        GOOD.replace("lr: 1.0e-3", "lr: .inf"), fragments=["train.optimizer.lr", "finite number"]
    ),
    "yaml-lr-1e400": SpecCase(
        GOOD.replace("lr: 1.0e-3", "lr: 1.0e400"), fragments=["train.optimizer.lr", "finite number"]
    ),
    "json-duplicate-key": SpecCase(
        '{"model": {"input_size": 64}, "model": {"input_size": 96}}',
        fragments=["refused JSON: duplicate key 'model'"],
        suffix=".json",
    ),
    "json-duplicate-nested-key": SpecCase(
        _json(lr=0.1).replace('"lr": 0.1', '"lr": 0.1, "lr": 0.2'),
        fragments=["duplicate key 'lr'"],
        suffix=".json",
    ),
    "json-deep": SpecCase("[" * 100_000, fragments=["nesting deeper than 64 levels"], suffix=".json"),
    "json-huge-int": SpecCase(
        _json(lr=1).replace('"lr": 1', f'"lr": {HUGE}'),
        fragments=["integer of more than 40 digits"],
        suffix=".json",
    ),
    "json-infinity": SpecCase(
        _json(lr="@INF@"), fragments=["train.optimizer.lr", "finite number"], suffix=".json"
    ),
    "json-nan": SpecCase(_json(lr="@NAN@"), fragments=["train.optimizer.lr"], suffix=".json"),
    "override-lr-inf": SpecCase(GOOD, ["train.optimizer.lr=.inf"], ["train.optimizer.lr", "finite number"]),
    "override-lr-minus-inf": SpecCase(GOOD, ["train.optimizer.lr=-.inf"], ["train.optimizer.lr"]),
    "override-lr-nan": SpecCase(GOOD, ["train.optimizer.lr=.nan"], ["train.optimizer.lr"]),
    "override-clip-inf": SpecCase(GOOD, ["train.clip_grad_norm=.inf"], ["train.clip_grad_norm", "finite"]),
    "override-augment-p-inf": SpecCase(GOOD, ["data.augment.0.p=.inf"], ["data.augment.0.p", "finite"]),
    "override-normalize-inf": SpecCase(
        GOOD, ["model.normalize={mean: [0, 0, 0], std: [.inf, 1, 1]}"], ["model.normalize.std.0", "finite"]
    ),
    "override-deep-value": SpecCase(GOOD, ["model.input_size=" + "[" * 100_000], ["nesting deeper than 64"]),
    "override-laughs": SpecCase(GOOD, ["model.class_names=" + _flow_laughs()], ["more than 100000 values"]),
    "override-long-key": SpecCase(GOOD, ["a." * 100 + "b=1"], ["a key path of more than 64 parts"]),
    "override-huge-index": SpecCase(
        GOOD, [f"model.class_names.{HUGE}=x"], ["is not an index of a list of 1"]
    ),
    "override-huge-int": SpecCase(GOOD, [f"train.epochs={HUGE}"], ["integer of more than 40 digits"]),
    "override-extends": SpecCase(GOOD, ["extends=other.yaml"], ["extends: set it in the spec file"]),
}


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.lstat().st_size for p in folder.rglob("*")}


@dataclass
class Ran:
    result: Result
    changed: bool


@pytest.fixture(scope="module")
def spec_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    work = tmp_path_factory.mktemp("hostile-specs")
    cases, before = {}, {}
    for name, case in SPECS.items():
        folder = work / name
        folder.mkdir()
        path = folder / f"spec{case.suffix}"
        path.write_bytes(case.text if isinstance(case.text, bytes) else case.text.encode())
        before[name] = _snapshot(folder)
        cases[name] = Case(["validate", str(path), *case.overrides], [str(work / "elsewhere")])
    ran = run_cases(cases, work, memory_limit=2 << 30)
    return {name: Ran(result, before[name] != _snapshot(work / name)) for name, result in ran.items()}


@pytest.mark.parametrize("name", list(SPECS))
def test_hostile_spec_is_refused(name: str, spec_results: dict[str, Ran]) -> None:
    ran = spec_results[name]
    assert_refused(ran.result, SPECS[name].fragments)
    first = ran.result.stderr.splitlines()[0]
    names = f"spec{SPECS[name].suffix}" if not SPECS[name].overrides else "override '"
    assert first.startswith("toolkit: error: ") and (names in first or f"spec{SPECS[name].suffix}" in first)
    assert not ran.changed


def test_the_good_spec_validates(tmp_path: Path) -> None:
    """The base of the hostile specs is valid: each case fails for its own reason."""
    path = tmp_path / "spec.yaml"
    path.write_text(GOOD)
    result = run_cli("validate", str(path))
    assert result.returncode == 0, result.stderr
    json_path = tmp_path / "spec.json"
    json_path.write_text(_json())
    assert run_cli("validate", str(json_path)).returncode == 0


def test_billion_laughs_through_the_real_entry_point(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(_laughs())
    assert len(path.read_bytes()) < 500
    result = run_cli("validate", str(path), timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"toolkit: error: {path}: invalid YAML at line")


# -- annotation values -----------------------------------------------------------------------------
SIDE = 32


def _coco_document(**changes: object) -> dict:
    image = {"id": 1, "file_name": "a.png", "width": SIDE, "height": SIDE}
    annotation = {"id": 7, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10], "iscrowd": 0}
    category = {"id": 1, "name": "thing"}
    for key, value in changes.items():
        part, _, name = key.partition("__")
        {"image": image, "annotation": annotation, "category": category}[part][name] = value
    return {"images": [image], "annotations": [annotation], "categories": [category]}


@dataclass
class ValueCase:
    text: str  # the annotation file (COCO JSON or a VOC XML)
    fragments: list[str]
    kind: str = "coco"


def _coco_text(**changes: object) -> str:
    return json.dumps(_coco_document(**changes))


def _voc_xml(width: str = str(SIDE), xmax: str = "12") -> str:
    return (
        f"<annotation><size><width>{width}</width><height>{SIDE}</height></size>"
        f"<object><name>thing</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>{xmax}</xmax>"
        "<ymax>12</ymax></bndbox></object></annotation>"
    )


ANNOTATION_7 = ["instances.json, annotation id 7"]
VALUES: dict[str, ValueCase] = {
    "coco-bbox-5000-digits": ValueCase(
        _coco_text(annotation__bbox=[2, 2, 10, 10]).replace("[2, 2, 10, 10]", f"[2, 2, {HUGE}, 10]"),
        ["instances.json: refused JSON: an integer of thousands of digits"],
    ),
    "coco-bbox-400-digits": ValueCase(
        _coco_text(annotation__bbox=[2, 2, int("9" * 400), 10]), [*ANNOTATION_7, "malformed bbox"]
    ),
    "coco-bbox-infinite": ValueCase(
        _coco_text().replace("[2, 2, 10, 10]", "[2, 2, 1e999, 10]"), [*ANNOTATION_7, "malformed bbox"]
    ),
    "coco-bbox-bools": ValueCase(
        _coco_text(annotation__bbox=[True, True, 10, 10]), [*ANNOTATION_7, "malformed bbox"]
    ),
    "coco-category-true": ValueCase(
        _coco_text(annotation__category_id=True), [*ANNOTATION_7, "unknown category_id True"]
    ),
    "coco-category-string": ValueCase(
        _coco_text(annotation__category_id="1"), [*ANNOTATION_7, "unknown category_id '1'"]
    ),
    "coco-image-id-true": ValueCase(
        _coco_text(image__id=True, annotation__image_id=True), ["instances.json: image entry #0"]
    ),
    "coco-image-id-huge": ValueCase(_coco_text(image__id=2**70), ["instances.json: image entry #0"]),
    "coco-width-huge": ValueCase(_coco_text(image__width=10**30), ["image entry #0", "positive integer"]),
    "coco-width-true": ValueCase(_coco_text(image__width=True), ["image entry #0", "'width': True"]),
    "coco-annotation-image-id-float": ValueCase(
        _coco_text(annotation__image_id=1.0), [*ANNOTATION_7, "image_id 1.0 is not an image"]
    ),
    "coco-iscrowd-string": ValueCase(
        _coco_text(annotation__iscrowd="yes"), [*ANNOTATION_7, "iscrowd 'yes' is not 0 or 1"]
    ),
    "coco-area-negative": ValueCase(_coco_text(annotation__area=-5), [*ANNOTATION_7, "area -5"]),
    "coco-category-id-true": ValueCase(
        _coco_text(category__id=True), ["instances.json: category #0 needs an integer 'id'"]
    ),
    "coco-category-name-mapping": ValueCase(
        _coco_text(category__name={"x": 1}), ["category #0", "non-empty string 'name'"]
    ),
    "coco-deep-json": ValueCase("[" * 100_000, ["instances.json: JSON nested too deeply"]),
    "voc-size-1e400": ValueCase(_voc_xml(width="1e400"), ["im.xml", "<size><width> is '1e400'"], "voc"),
    "voc-size-nan": ValueCase(_voc_xml(width="nan"), ["im.xml", "<size><width> is 'nan'"], "voc"),
    "voc-bndbox-1e400": ValueCase(_voc_xml(xmax="1e400"), ["im.xml", "object #0", "<bndbox>"], "voc"),
}


def _value_spec(folder: Path, case: ValueCase) -> Path:
    from PIL import Image

    if case.kind == "coco":
        Image.new("RGB", (SIDE, SIDE)).save(folder / "a.png")
        (folder / "instances.json").write_text(case.text)
        dataset = {"type": "coco", "images": str(folder), "annotations": str(folder / "instances.json")}
    else:
        root = folder / "voc"
        for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (root / sub).mkdir(parents=True)
        Image.new("RGB", (SIDE, SIDE)).save(root / "JPEGImages" / "im.jpg")
        (root / "Annotations" / "im.xml").write_text(case.text)
        (root / "ImageSets" / "Main" / "train.txt").write_text("im\n")
        dataset = {"type": "voc", "root": str(root), "class_names": ["thing"]}
    spec = yaml.safe_load(GOOD)
    spec["data"]["train"] = dataset
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def value_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    work = tmp_path_factory.mktemp("hostile-values")
    cases, before = {}, {}
    for name, case in VALUES.items():
        folder = work / name
        folder.mkdir()
        spec = _value_spec(folder, case)
        before[name] = _snapshot(folder)
        cases[name] = Case(["data", "stats", str(spec)], [str(work / "elsewhere")])
    control = work / "control-good"
    control.mkdir()
    good = ValueCase(_coco_text(annotation__iscrowd=False, annotation__area=100), [])
    cases["control-good"] = Case(["data", "stats", str(_value_spec(control, good)), "--json"])
    before["control-good"] = _snapshot(control)
    ran = run_cases(cases, work)
    return {name: Ran(result, before[name] != _snapshot(work / name)) for name, result in ran.items()}


@pytest.mark.parametrize("name", list(VALUES))
def test_hostile_annotation_value_is_refused(name: str, value_results: dict[str, Ran]) -> None:
    ran = value_results[name]
    assert_refused(ran.result, VALUES[name].fragments)
    assert len(ran.result.stderr.strip().splitlines()) == 1
    assert not ran.changed


def test_good_annotation_values_are_read(value_results: dict[str, Ran]) -> None:
    """The base of the value cases reads: 1 image, 1 object (so each case fails for its reason)."""
    result = value_results["control-good"].result
    assert result.code == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["images"] == 1 and stats["classes"]["thing"]["objects"] == 1
