"""The box-quirk policy, one helper for COCO, VOC and YOLO alike: a zero-area or inverted box is
dropped, a box crossing the border is clipped, a box wholly outside is dropped; the image stays, the
counts are kept and one DataWarning says so. Malformed values stay bad samples."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import yaml
from PIL import Image

from toolkit.data.stats import box_stats
from toolkit.errors import BadSampleError
from toolkit_plugins.datasets.coco_dataset import CocoDataset
from toolkit_plugins.datasets.common import OUTSIDE, ZERO_AREA, BoxQuirks, DataWarning, seeded_split
from toolkit_plugins.datasets.voc_dataset import VocDataset
from toolkit_plugins.datasets.yolo_dataset import YoloDataset

W, H = 40, 30

# the same objects in every format, as XYXY pixels (x1, y1, x2, y2): what each should become
QUIRKS = [
    ((4, 4, 14, 14), (4, 4, 14, 14)),  # fine
    ((10, 10, 10, 20), None),  # zero width: dropped
    ((20, 5, 16, 9), None),  # inverted (x2 < x1): dropped
    ((34, 20, 43, 28), (34, 20, 40, 28)),  # 3 px past the right border: clipped
    ((-2, -1, 6, 8), (0, 0, 6, 8)),  # past the top-left corner: clipped
    ((45, 5, 55, 15), None),  # wholly outside: dropped
]
KEPT = [list(map(float, kept)) for _, kept in QUIRKS if kept is not None]


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (W, H), (50, 50, 50)).save(path)


def _coco(tmp_path: Path) -> CocoDataset:
    _image(tmp_path / "images" / "a.png")
    annotations = [
        {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0}
        for i, ((x1, y1, x2, y2), _) in enumerate(QUIRKS)
    ]
    document = {
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "instances.json").write_text(json.dumps(document))
    return CocoDataset(images=tmp_path / "images", annotations=tmp_path / "instances.json")


def _voc(tmp_path: Path) -> VocDataset:
    _image(tmp_path / "a.png")
    objects = "".join(  # VOC is 1-based: xmin = x1 + 1
        f"<object><name>thing</name><bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for (x1, y1, x2, y2), _ in QUIRKS
    )
    (tmp_path / "a.xml").write_text(
        f"<annotation><size><width>{W}</width><height>{H}</height></size>{objects}</annotation>"
    )
    return VocDataset(root=tmp_path)


def _yolo(tmp_path: Path) -> YoloDataset:
    _image(tmp_path / "images" / "a.png")
    (tmp_path / "labels").mkdir()
    lines = "".join(
        f"0 {(x1 + x2) / 2 / W} {(y1 + y2) / 2 / H} {(x2 - x1) / W} {(y2 - y1) / H}\n"
        for (x1, y1, x2, y2), _ in QUIRKS
    )
    (tmp_path / "labels" / "a.txt").write_text(lines)
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"train": "images", "names": ["thing"]}))
    return YoloDataset(root=tmp_path)


@pytest.mark.parametrize("make", [_coco, _voc, _yolo], ids=["coco", "voc", "yolo"])
def test_the_same_quirks_give_the_same_boxes_in_every_format(tmp_path: Path, make) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = make(tmp_path)
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(messages) == 1, messages
    assert "dropped 3 boxes (1 wholly outside the image, 2 zero-area or inverted; first: " in messages[0]
    assert "clipped 2 boxes crossing the image border" in messages[0] and "the images stay" in messages[0]
    assert dataset.dropped_boxes == 3 and dataset.clipped_boxes == 2 and dataset.skipped == []
    assert len(dataset) == 1
    boxes = dataset[0][1]["boxes"].tolist()
    assert len(boxes) == len(KEPT)
    for box, kept in zip(boxes, KEPT, strict=True):
        assert box == pytest.approx(kept, abs=1e-4)
    stats = box_stats(dataset)
    assert stats.to_dict()["dropped_boxes"] == 3 and stats.to_dict()["clipped_boxes"] == 2
    assert (
        "boxes dropped (zero-area, inverted or outside the image): 3, clipped to the image: 2"
        in stats.table()
    )


def test_an_image_whose_boxes_are_all_dropped_stays(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    box = "<bndbox><xmin>50</xmin><ymin>1</ymin><xmax>60</xmax><ymax>10</ymax></bndbox>"
    (tmp_path / "a.xml").write_text(f"<annotation><object><name>x</name>{box}</object></annotation>")
    with pytest.warns(DataWarning, match=r"dropped 1 box \(1 wholly outside the image; first: .*a\.xml"):
        dataset = VocDataset(root=tmp_path, class_names=["x"])
    assert len(dataset) == 1 and dataset[0][1]["boxes"].shape == (0, 4)


def test_a_coco_zero_or_negative_size_is_dropped_not_bad(tmp_path: Path) -> None:
    _image(tmp_path / "images" / "a.png")
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 10]},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, -3]},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [5, 5, float("nan"), 3]},  # malformed: bad
    ]
    document = {
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "instances.json").write_text(json.dumps(document))
    paths = {"images": tmp_path / "images", "annotations": tmp_path / "instances.json"}
    with pytest.raises(BadSampleError, match="annotation id 3: missing or malformed bbox"):
        CocoDataset(**paths)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = CocoDataset(**paths, on_bad_sample="skip")
    assert dataset.dropped_boxes == 2 and len(dataset.skipped) == 1 and len(caught) == 2
    assert dataset.ground_truth()["annotations"] == []


def test_box_quirks_unit() -> None:
    quirks = BoxQuirks("src")
    assert quirks.fit((1, 2, 3, 4), 10, 10, "a") == (1.0, 2.0, 3.0, 4.0)
    assert quirks.fit((-0.0001, 0, 10.0001, 10), 10, 10, "rounding") == (0.0, 0.0, 10.0, 10.0)
    assert quirks.clipped == 0  # within CLIP_SLACK: clipped all the same, not counted
    assert quirks.fit((5, 5, 5, 8), 10, 10, "b") is None and quirks.fit((5, 5, 8, 4), 10, 10, "c") is None
    assert quirks.fit((10, 0, 12, 5), 10, 10, "d") is None  # touches the border only: outside
    assert quirks.fit((-5, 8, 3, 12), 10, 10, "e") == (0.0, 8.0, 3.0, 10.0) and quirks.clipped == 1
    assert dict(quirks.dropped) == {ZERO_AREA: 2, OUTSIDE: 1} and quirks.dropped_boxes == 3
    assert quirks.summary().startswith("src: dropped 3 boxes (1 wholly outside the image, 2 zero-area")
    assert "first: b (zero-area or inverted)" in quirks.summary()
    assert (
        "clipped 1 box crossing the image border to the image (first: e in a 10x10 image)" in quirks.summary()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BoxQuirks("nothing").warn()  # no quirks: no warning


def test_seeded_split_is_deterministic_disjoint_and_complete() -> None:
    names = [f"n{i}" for i in range(20)]
    train, val = (seeded_split(names, 0.25, 7, split, "src") for split in ("train", "val"))
    assert len(val) == 5 and sorted(train + val) == sorted(names)
    assert val == seeded_split(list(reversed(names)), 0.25, 7, "val", "src")[::-1]  # order-independent
    assert seeded_split(names, 0.25, 8, "val", "src") != val
    assert len(seeded_split(["a", "b"], 0.01, 0, "val", "src")) == 1  # at least one each
    assert len(seeded_split(["a", "b"], 0.99, 0, "train", "src")) == 1
