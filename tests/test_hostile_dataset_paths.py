"""Hostile input, class 1: every path a dataset file names stays inside the dataset's root.

Each case is a COCO, VOC or image-folder dataset whose annotations (or links) point outside its
root; `toolkit data preview` (which reads the images) must refuse it: exit 2, one error line naming
the annotation file and the entry, no traceback, and nothing under `outside/` opened or listed
(an audit hook watches: tests/hostile_runner.py) nor changed, and no preview written. A few
controls show what is allowed (links within the root, absolute paths with the COCO option) and
that the watch does see an opened file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_cli
from hostile_runner import Case, Result, assert_refused, run_cases
from PIL import Image

SIDE = 32


def _png(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _outside(tmp: Path) -> Path:
    """Files a hostile dataset points at: an image, a folder of images, a VOC XML."""
    outside = tmp / "outside"
    _png(outside / "secret.png", seed=9)
    _png(outside / "dir" / "secret.png", seed=8)
    _png(outside / "x.jpg", seed=7)
    (outside / "x.xml").write_text(_voc_xml())
    return outside


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every entry below `folder` (links not followed) with its size and modification time."""
    found = {}
    for directory, subdirs, files in os.walk(folder):
        for name in subdirs + files:
            info = os.lstat(os.path.join(directory, name))
            found[os.path.relpath(os.path.join(directory, name), folder)] = (info.st_size, info.st_mtime_ns)
    return found


def _spec(tmp: Path, dataset: dict, *, classification: bool = False) -> Path:
    head = {"type": "classification"} if classification else {"type": "centernet", "neck_channels": [16]}
    spec = {
        "model": {
            "backbone": {"type": "resnet18"},
            "head": head,
            "input_size": 64,
            "class_names": ["absent", "present"] if classification else ["thing"],
        },
        "data": {"train": dataset, "num_workers": 0, "augment": [{"type": "resize"}]},
    }
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


# -- COCO ----------------------------------------------------------------------------------------
def _coco(tmp: Path, file_name: object, *, allow_absolute: bool = False) -> Path:
    """A COCO dataset with a good image (#0) and a second entry (#1) named `file_name`."""
    images = tmp / "data" / "images"
    _png(images / "a.png")
    entries = [
        {"id": 1, "file_name": "a.png", "width": SIDE, "height": SIDE},
        {"id": 2, "file_name": file_name, "width": SIDE, "height": SIDE},
    ]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10], "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [4, 4, 10, 10], "iscrowd": 0},
    ]
    document = {"images": entries, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}
    (tmp / "data" / "instances.json").write_text(json.dumps(document))
    dataset = {"type": "coco", "images": str(images), "annotations": str(tmp / "data" / "instances.json")}
    if allow_absolute:
        dataset["allow_absolute_paths"] = True
    return _spec(tmp, dataset)


def _coco_link(target: str, link: str, file_name: str) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        spec = _coco(tmp, file_name)
        (tmp / "data" / "images" / link).symlink_to(tmp / target)
        return spec

    return build


COCO_ENTRY = ["instances.json", "image entry #1 (id 2)"]


@dataclass
class Hostile:
    build: Callable[[Path], Path]  # writes the dataset under tmp, returns the spec
    fragments: list[str]  # what the error line must say
    forbidden: tuple[str, ...] = ()  # places besides tmp/outside that must stay untouched


CASES: dict[str, Hostile] = {
    "coco-parent": Hostile(
        lambda t: _coco(t, "../../outside/secret.png"),
        [*COCO_ENTRY, "'../../outside/secret.png' leaves"],
    ),
    "coco-etc-passwd": Hostile(
        lambda t: _coco(t, "../" * 12 + "etc/passwd"), [*COCO_ENTRY, "etc/passwd' leaves"], ("/etc",)
    ),
    "coco-absolute": Hostile(
        lambda t: _coco(t, str(t / "outside" / "secret.png")),
        [*COCO_ENTRY, "is absolute", "allow_absolute_paths: true"],
    ),
    "coco-absolute-etc": Hostile(
        lambda t: _coco(t, "/etc/passwd"), [*COCO_ENTRY, "'/etc/passwd' is absolute"], ("/etc",)
    ),
    "coco-dotdot-inside-name": Hostile(
        lambda t: _coco(t, "sub/../../../outside/secret.png"), [*COCO_ENTRY, "leaves"]
    ),
    "coco-relative-with-option": Hostile(
        lambda t: _coco(t, "../../outside/secret.png", allow_absolute=True), [*COCO_ENTRY, "leaves"]
    ),
    "coco-file-link-out": Hostile(
        _coco_link("outside/secret.png", "link.png", "link.png"),
        [*COCO_ENTRY, "'link.png' leads through a link to", "outside/secret.png"],
    ),
    "coco-folder-link-out": Hostile(
        _coco_link("outside/dir", "linked", "linked/secret.png"),
        [*COCO_ENTRY, "'linked/secret.png' leads through a link to", "outside/dir/secret.png"],
    ),
    "coco-the-folder-itself": Hostile(lambda t: _coco(t, "."), [*COCO_ENTRY, "'.' leaves"]),
    "coco-empty-name": Hostile(lambda t: _coco(t, ""), ["instances.json", "image entry #1"]),
    "coco-nul-byte": Hostile(lambda t: _coco(t, "a.png\x00.txt"), [*COCO_ENTRY, "NUL character"]),
    "coco-name-not-a-string": Hostile(lambda t: _coco(t, ["a.png"]), ["instances.json", "image entry #1"]),
}


# -- VOC -----------------------------------------------------------------------------------------
def _voc_xml(filename: str | None = None) -> str:
    name = f"<filename>{filename}</filename>" if filename is not None else ""
    return (
        f"<annotation>{name}<size><width>{SIDE}</width><height>{SIDE}</height></size>"
        "<object><name>thing</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>12</xmax><ymax>12</ymax>"
        "</bndbox></object></annotation>"
    )


def _voc(tmp: Path, line: str, *, filename: str | None = None, split: str = "train") -> Path:
    """A VOC root with a good image `good` and a second split line `line`."""
    root = tmp / "voc"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    _png(root / "JPEGImages" / "good.png")
    (root / "Annotations" / "good.xml").write_text(_voc_xml(filename))
    (root / "ImageSets" / "Main" / "train.txt").write_text(f"good\n{line}\n")
    return _spec(tmp, {"type": "voc", "root": str(root), "split": split, "class_names": ["thing"]})


def _voc_link(kind: str) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        spec = _voc(tmp, "x")
        if kind == "xml":
            (tmp / "voc" / "Annotations" / "x.xml").symlink_to(tmp / "outside" / "x.xml")
        else:
            (tmp / "voc" / "Annotations" / "x.xml").write_text(_voc_xml())
            (tmp / "voc" / "JPEGImages" / "x.jpg").symlink_to(tmp / "outside" / "x.jpg")
        return spec

    return build


SPLIT = "ImageSets/Main/train.txt"
CASES |= {
    "voc-split-parent": Hostile(lambda t: _voc(t, "../../outside/x"), [SPLIT, "line 2", "leaves"]),
    "voc-split-absolute": Hostile(lambda t: _voc(t, str(t / "outside" / "x")), [SPLIT, "line 2", "absolute"]),
    "voc-split-etc": Hostile(lambda t: _voc(t, "../" * 12 + "etc/passwd"), [SPLIT, "line 2"], ("/etc",)),
    "voc-xml-link-out": Hostile(_voc_link("xml"), [SPLIT, "line 2", "'x.xml' leads through a link"]),
    "voc-image-link-out": Hostile(_voc_link("image"), ["Annotations/x.xml", "'x.jpg' leads through a link"]),
    "voc-filename-parent": Hostile(
        lambda t: _voc(t, "good", filename=".."), ["Annotations/good.xml", "'..' leaves"]
    ),
    "voc-split-option-parent": Hostile(lambda t: _voc(t, "good", split="../../../outside/x"), ["split '"]),
}


# -- image folder ----------------------------------------------------------------------------------
def _folder(tmp: Path, links: dict[str, str]) -> Path:
    """ROOT/absent and ROOT/present with two images each, plus `links` (link path -> target)."""
    root = tmp / "folders"
    for seed, name in enumerate(("absent/a.png", "absent/b.png", "present/c.png", "present/d.png")):
        _png(root / name, seed)
    for link, target in links.items():
        (root / link).symlink_to(target)
    return _spec(tmp, {"type": "image_folder", "root": str(root)}, classification=True)


def _folder_with_a_linked_class(tmp: Path) -> Path:
    """ROOT/absent with two images, ROOT/present a link to the outside folder."""
    root = tmp / "folders"
    for seed, name in enumerate(("absent/a.png", "absent/b.png")):
        _png(root / name, seed)
    (root / "present").symlink_to(tmp / "outside")
    return _spec(tmp, {"type": "image_folder", "root": str(root)}, classification=True)


def _outside_target(relative: str) -> Callable[[Path], Path]:
    return lambda t: _folder(t, {relative: str(t / "outside" / "dir")})


CASES |= {
    "folder-loop-to-parent": Hostile(
        lambda t: _folder(t, {"present/loop": ".."}), ["present/loop: a link to", "outside the class folder"]
    ),
    "folder-link-into-other-class": Hostile(
        lambda t: _folder(t, {"present/more": "../absent"}), ["present/more: a link to", "absent"]
    ),
    "folder-file-link-out": Hostile(
        lambda t: _folder(t, {"present/x.png": str(t / "outside" / "secret.png")}),
        ["present/x.png: a link to", "outside/secret.png"],
    ),
    "folder-dir-link-out": Hostile(
        _outside_target("present/more"), ["present/more: a link to", "outside/dir"]
    ),
    "folder-class-link-out": Hostile(  # a class the model names (its names reach the dataset)
        lambda t: _folder_with_a_linked_class(t),
        ["present: the class folder is a link to", "never leaves its root"],
    ),
}


@dataclass
class Ran:
    result: Result
    folder: Path  # the case's own folder
    changed: bool  # whether anything under outside/ changed


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    """Every case and control run once, all in one driver process."""
    work = tmp_path_factory.mktemp("hostile-paths")
    cases, before = {}, {}
    for name, hostile in CASES.items():
        tmp = work / name
        outside = _outside(tmp)
        spec = hostile.build(tmp)
        before[name] = _snapshot(outside)
        argv = ["data", "preview", str(spec), "-n", "2", "-o", str(tmp / "preview.png")]
        cases[name] = Case(argv, [str(outside), *hostile.forbidden])
    cases |= _controls(work)
    ran = run_cases(cases, work)
    return {
        name: Ran(result, work / name, before.get(name, {}) != _snapshot(work / name / "outside"))
        for name, result in ran.items()
    }


@pytest.mark.parametrize("name", list(CASES))
def test_a_path_leaving_the_root_is_refused(name: str, results: dict[str, Ran]) -> None:
    ran = results[name]
    assert_refused(ran.result, CASES[name].fragments)
    assert not ran.changed, "outside/ changed"
    assert not (ran.folder / "preview.png").exists()


# -- controls: what stays allowed, and the watch sees an open --------------------------------------
def _controls(work: Path) -> dict[str, Case]:
    allowed = work / "control-absolute"
    outside = _outside(allowed)
    spec = _coco(allowed, str(outside / "secret.png"), allow_absolute=True)
    inside = work / "control-links-inside"
    _outside(inside)
    folder_spec = _folder(
        inside, {"present/self": ".", "present/again": "../present", "absent/copy.png": "a.png"}
    )
    skipping = work / "control-skip"
    _outside(skipping)
    skip_spec = _folder(skipping, {"present/loop": ".."})
    return {
        "control-skip": Case(
            ["data", "stats", str(skip_spec), "--json", "data.on_bad_sample=skip"],
            [str(skipping / "outside")],
        ),
        "control-absolute": Case(
            ["data", "preview", str(spec), "-n", "2", "-o", str(allowed / "preview.png")], [str(outside)]
        ),
        "control-links-inside": Case(
            ["data", "stats", str(folder_spec), "--json"], [str(inside / "outside")]
        ),
    }


def test_absolute_paths_with_the_option_are_read(results: dict[str, Ran]) -> None:
    """allow_absolute_paths: true reads the absolute file_name (and the audit hook sees it)."""
    ran = results["control-absolute"]
    assert ran.result.code == 0, ran.result.stderr
    assert (ran.folder / "preview.png").is_file()
    assert any(entry.endswith("outside/secret.png") for entry in ran.result.touched), ran.result.touched


def test_links_within_a_class_folder_are_followed_once(results: dict[str, Ran]) -> None:
    """`self -> .` and a second link to the same folder add nothing; a file link inside counts."""
    result = results["control-links-inside"].result
    assert result.code == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["images"] == 5
    assert stats["classes"] == {"absent": {"images": 3}, "present": {"images": 2}}
    assert result.touched == []


def test_skip_policy_skips_a_link_out_with_a_warning(results: dict[str, Ran]) -> None:
    """With on_bad_sample: skip a link leaving its class folder is skipped, counted, warned about."""
    result = results["control-skip"].result
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["images"] == 4
    assert "toolkit: warning:" in result.stderr
    assert "skipped 1 links leading out of their class folder" in result.stderr
    assert "Traceback" not in result.stderr and result.touched == []


def test_the_real_entry_point_exits_2(tmp_path: Path) -> None:
    """The same refusal through `python -m toolkit` (the driver calls the same main)."""
    _outside(tmp_path)
    spec = _coco(tmp_path, "../../outside/secret.png")
    result = run_cli("data", "preview", str(spec), "-n", "2", "-o", str(tmp_path / "p.png"))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "image entry #1 (id 2)" in result.stderr
