"""Bad data: every kind of broken input gets an error naming the file (and annotation), or a counted skip."""

from __future__ import annotations

import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from toolkit.data.images import read_image
from toolkit.errors import BadSampleError, DataError, ToolkitError
from toolkit.plugins import PluginManager
from toolkit_plugins.datasets.coco_dataset import CocoDataset
from toolkit_plugins.datasets.common import DataWarning
from toolkit_plugins.datasets.image_folder_dataset import ImageFolderDataset
from toolkit_plugins.datasets.voc_dataset import VocDataset

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<annotation><filename>&lol9;</filename></annotation>
"""


# -- fixtures ------------------------------------------------------------------------------------
def _image(path: Path, size: tuple[int, int] = (64, 48), seed: int = 0) -> Path:
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).save(path, quality=90) if path.suffix == ".jpg" else Image.fromarray(array).save(
        path
    )
    return path


def _coco(tmp_path: Path, annotations: list[dict] | None = None) -> dict[str, str]:
    """Two 64x48 images (a.jpg, b.png), category 1 'thing'; default: one good box per image."""
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    _image(folder / "a.jpg")
    _image(folder / "b.png", seed=1)
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
        {"id": 2, "file_name": "b.png", "width": 64, "height": 48},
    ]
    if annotations is None:
        annotations = [_ann(10, 1, [4, 4, 20, 20]), _ann(11, 2, [10, 10, 30, 20])]
    document = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(document, indent=1))
    return {"images": str(folder), "annotations": str(path)}


def _ann(ann_id: int, image_id: int, bbox: list[float], category: int = 1) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": category, "bbox": bbox, "iscrowd": 0}


def _voc(tmp_path: Path, xml_by_id: dict[str, str]) -> Path:
    root = tmp_path / "voc"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    for name, xml in xml_by_id.items():
        _image(root / "JPEGImages" / f"{name}.jpg")
        (root / "Annotations" / f"{name}.xml").write_text(xml)
    (root / "ImageSets" / "Main" / "train.txt").write_text("".join(f"{n}\n" for n in xml_by_id))
    return root


def _voc_xml(*boxes: tuple[str, int, int, int, int]) -> str:
    objects = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>"
        f"<ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in boxes
    )
    return f"<annotation><size><width>64</width><height>48</height></size>{objects}</annotation>"


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny file whose PNG header claims width x height (a decompression bomb as PIL sees it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def _skip(factory, **kwargs):
    """Build with on_bad_sample='skip', asserting exactly one DataWarning; return (dataset, warning)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = factory(**kwargs, on_bad_sample="skip")
    data_warnings = [w for w in caught if issubclass(w.category, DataWarning)]
    assert len(data_warnings) == 1, [str(w.message) for w in caught]
    return dataset, str(data_warnings[0].message)


# -- images (always BadSampleError at __getitem__) -------------------------------------------------
def test_missing_image_file_is_reported_on_access(tmp_path: Path) -> None:
    paths = _coco(tmp_path)
    (Path(paths["images"]) / "b.png").unlink()
    for mode in ("error", "skip"):
        dataset = CocoDataset(**paths, on_bad_sample=mode)  # indexing does not touch images
        assert len(dataset) == 2 and dataset[0][0].shape == (3, 48, 64)
        with pytest.raises(BadSampleError, match=r"b\.png: image file not found") as info:
            dataset[1]
        assert info.value.file == str(Path(paths["images"]) / "b.png")


def test_truncated_jpeg(tmp_path: Path) -> None:
    paths = _coco(tmp_path)
    jpeg = Path(paths["images"]) / "a.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    with pytest.raises(BadSampleError, match=r"a\.jpg: cannot decode the image, truncated or corrupt"):
        CocoDataset(**paths)[0]
    with pytest.raises(BadSampleError, match="truncated or corrupt"):
        read_image(jpeg)


def test_corrupt_image_of_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.png"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(BadSampleError, match=r"noise\.png: not a readable image") as info:
        read_image(path)
    assert info.value.file == str(path)
    folder = tmp_path / "folder" / "cls"
    folder.mkdir(parents=True)
    (folder / "x.jpg").write_bytes(np.random.default_rng(1).bytes(500))
    dataset = ImageFolderDataset(root=tmp_path / "folder")  # found by extension, bad on access
    with pytest.raises(BadSampleError, match=r"x\.jpg"):
        dataset[0]


def test_decompression_bomb_header(tmp_path: Path) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    bomb = _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    assert bomb.stat().st_size < 200
    with pytest.raises(BadSampleError, match=r"bomb\.png: image of 400000000 pixels exceeds the pixel limit"):
        read_image(bomb)
    assert limit == Image.MAX_IMAGE_PIXELS  # PIL's limit is kept


def test_image_above_the_pixel_limit_but_below_twice_it(tmp_path: Path, monkeypatch) -> None:
    path = _image(tmp_path / "big.png", size=(40, 30))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL only warns between 1x and 2x the limit
    with pytest.raises(
        BadSampleError, match=r"big\.png: image of 40x30 = 1200 pixels exceeds the limit of 1000"
    ):
        read_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # PIL raises above 2x
    with pytest.raises(BadSampleError, match=r"big\.png: image of 1200 pixels exceeds the pixel limit"):
        read_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1200)
    assert read_image(path).shape == (3, 30, 40)


def test_image_size_disagreeing_with_the_annotations(tmp_path: Path) -> None:
    paths = _coco(tmp_path)
    _image(Path(paths["images"]) / "b.png", size=(32, 32))
    with pytest.raises(BadSampleError, match=r"b\.png: the image is 32x32 but .*instances\.json says 64x48"):
        CocoDataset(**paths)[1]


# -- COCO annotations ------------------------------------------------------------------------------
# boxes outside the image or of non-positive size are box quirks, not bad samples: tests/test_box_quirks.py
BAD_COCO = {
    "category": (_ann(12, 1, [5, 5, 10, 10], category=9), r"unknown category_id 9 \(known: 1\)"),
    "no bbox": ({"id": 12, "image_id": 1, "category_id": 1}, "missing or malformed bbox None"),
    "unknown image": (_ann(12, 77, [5, 5, 10, 10]), "image_id 77 is not an image of the file"),
}


@pytest.mark.parametrize("case", list(BAD_COCO))
def test_bad_coco_annotation(tmp_path: Path, case: str) -> None:
    annotation, reason = BAD_COCO[case]
    paths = _coco(tmp_path, [_ann(10, 1, [4, 4, 20, 20]), annotation, _ann(11, 2, [1, 1, 5, 5])])
    with pytest.raises(BadSampleError, match=reason) as info:
        CocoDataset(**paths)
    message = str(info.value)
    assert message.startswith(f"{paths['annotations']}, annotation id 12: ")
    if case != "unknown image":
        assert "(image a.jpg)" in message
    dataset, warning = _skip(CocoDataset, **paths)
    assert len(dataset.skipped) == 1 and dataset.skipped[0] == message
    assert "skipped 1 " in warning and "annotation id 12" in warning
    assert dataset[0][1]["boxes"].tolist() == [[4.0, 4.0, 24.0, 24.0]]  # the good one stays
    assert [a["bbox"] for a in dataset.ground_truth()["annotations"]] == [
        [4.0, 4.0, 20.0, 20.0],
        [1.0, 1.0, 5.0, 5.0],
    ]


def test_several_bad_annotations_give_one_warning_with_the_count(tmp_path: Path) -> None:
    bad = [_ann(20 + i, 2, [1, 1, 5, 5], category=9) for i in range(5)]  # unknown category
    paths = _coco(tmp_path, [_ann(10, 1, [4, 4, 20, 20]), *bad])
    dataset, warning = _skip(CocoDataset, **paths)
    assert len(dataset.skipped) == 5 and "skipped 5 " in warning and "annotation id 20" in warning
    assert len(dataset) == 2 and dataset[1][1]["boxes"].shape == (0, 4)


def test_malformed_json(tmp_path: Path) -> None:
    paths = _coco(tmp_path)
    text = Path(paths["annotations"]).read_text()
    Path(paths["annotations"]).write_text(text.replace('"width": 64', '"width": 64,,', 1))
    for mode in ("error", "skip"):
        with pytest.raises(
            DataError, match=r"instances\.json: malformed JSON at line \d+, column \d+"
        ) as info:
            CocoDataset(**paths, on_bad_sample=mode)
        assert not isinstance(info.value, BadSampleError)


def test_not_a_coco_file(tmp_path: Path) -> None:
    paths = _coco(tmp_path)
    Path(paths["annotations"]).write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match="'annotations' is missing or not a list"):
        CocoDataset(**paths)


def test_empty_annotation_list(tmp_path: Path) -> None:
    paths = _coco(tmp_path, annotations=[])
    with pytest.raises(DataError, match=r"instances\.json: the file has no annotations at all"):
        CocoDataset(**paths)
    dataset, warning = _skip(CocoDataset, **paths)
    assert "no annotations at all" in warning and len(dataset) == 2
    assert all(dataset[i][1]["boxes"].shape == (0, 4) for i in range(2))
    with pytest.raises(DataError, match="no usable images with objects"):
        CocoDataset(**paths, skip_empty=True, on_bad_sample="skip")


def test_missing_annotation_file_and_image_folder(tmp_path: Path) -> None:
    paths = _coco(tmp_path)
    with pytest.raises(DataError, match=r"nope\.json: annotation file not found"):
        CocoDataset(images=paths["images"], annotations=str(tmp_path / "nope.json"), on_bad_sample="skip")
    with pytest.raises(DataError, match=r"no_images: image folder not found"):
        CocoDataset(images=str(tmp_path / "no_images"), annotations=paths["annotations"])


# -- VOC -------------------------------------------------------------------------------------------
def test_malformed_xml(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"good": _voc_xml(("cat", 1, 1, 10, 10)), "bad": "<annotation><object>"})
    xml = root / "Annotations" / "bad.xml"
    with pytest.raises(BadSampleError, match="malformed XML") as info:
        VocDataset(root=root, class_names=["cat"])
    assert info.value.file == str(xml)
    dataset, warning = _skip(VocDataset, root=root, class_names=["cat"])
    assert len(dataset) == 1 and dataset.items[0]["name"] == "good" and str(xml) in warning


def test_xml_entity_bomb_is_refused(tmp_path: Path) -> None:
    root = _voc(tmp_path, {"lol": BILLION_LAUGHS, "good": _voc_xml(("cat", 1, 1, 10, 10))})
    with pytest.raises(BadSampleError, match=r"lol\.xml: the XML declares entities .*EntitiesForbidden"):
        VocDataset(root=root, class_names=["cat"])
    dataset, _ = _skip(VocDataset, root=root, class_names=["cat"])
    assert len(dataset) == 1 and len(dataset.skipped) == 1 and "lol.xml" in dataset.skipped[0]


@pytest.mark.parametrize(
    ("box", "reason"),
    [
        (("dog", 1, 1, 10, 10), r"unknown class 'dog'; add it to class_names \(cat\)"),
        (("cat", "x", 1, 10, 10), "missing or non-numeric <bndbox> coordinates"),
        # inverted and outside boxes are box quirks, not bad samples: tests/test_box_quirks.py
    ],
)
def test_bad_voc_object(tmp_path: Path, box: tuple, reason: str) -> None:
    root = _voc(tmp_path, {"im": _voc_xml(("cat", 1, 1, 10, 10), box)})
    with pytest.raises(BadSampleError, match=reason) as info:
        VocDataset(root=root, class_names=["cat"])
    assert str(info.value).startswith(f"{root / 'Annotations' / 'im.xml'}, annotation object #1 ({box[0]})")
    dataset, warning = _skip(VocDataset, root=root, class_names=["cat"])
    assert len(dataset) == 1 and dataset[0][1]["boxes"].tolist() == [[0.0, 0.0, 10.0, 10.0]]
    assert "object #1" in warning and len(dataset.skipped) == 1


def test_voc_missing_pieces(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="VOC root folder not found"):
        VocDataset(root=tmp_path / "nowhere", class_names=["cat"])
    root = _voc(tmp_path, {"im": _voc_xml(("cat", 1, 1, 10, 10))})
    with pytest.raises(DataError, match=r"val\.txt: split file not found.*available splits: train"):
        VocDataset(root=root, split="val", class_names=["cat"])
    (root / "ImageSets" / "Main" / "train.txt").write_text("im\nghost\n")
    with pytest.raises(BadSampleError, match=r"ghost\.xml: annotation file not found"):
        VocDataset(root=root, class_names=["cat"])
    dataset, _ = _skip(VocDataset, root=root, class_names=["cat"])
    assert len(dataset) == 1
    (root / "JPEGImages" / "im.jpg").unlink()
    with pytest.raises(BadSampleError, match=r"im\.jpg: image file not found"):
        dataset[0]


# -- image folder and policy ---------------------------------------------------------------------
def test_image_folder_without_images(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="image folder not found"):
        ImageFolderDataset(root=tmp_path / "none")
    with pytest.raises(DataError, match="no class sub-folders"):
        ImageFolderDataset(root=tmp_path)
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"cats: no images"):
        ImageFolderDataset(root=tmp_path)
    with pytest.raises(DataError, match=r"no sub-folder for class 'dogs'"):
        ImageFolderDataset(root=tmp_path, class_names=["dogs"])


def test_on_bad_sample_is_injected_by_the_builder(tmp_path: Path) -> None:
    manager = PluginManager(modules=["toolkit_plugins.datasets.coco"], use_entry_points=False)
    entry = manager.registry("dataset").get("coco")
    # an unknown category (a box crossing the border is clipped: a box quirk, not a bad sample)
    paths = _coco(tmp_path, [_ann(10, 1, [4, 4, 20, 20]), _ann(12, 1, [4, 4, 5, 5], category=9)])
    with pytest.raises(BadSampleError, match="annotation id 12"):
        entry.build(paths, on_bad_sample="error")
    with pytest.warns(DataWarning, match="skipped 1 "):
        dataset = entry.build(paths, on_bad_sample="skip")
    assert len(dataset.skipped) == 1 and isinstance(dataset[0][0], torch.Tensor)
    with pytest.raises(ToolkitError, match="on_bad_sample must be 'error' or 'skip'"):
        entry.build(paths, on_bad_sample="ignore")
