"""Pascal VOC dataset: every XML parsed (with defusedxml) and validated at construction.

The split file's ids name `Annotations/<id>.xml` and `JPEGImages/<id>.<ext>`; each must stay in
its folder (no `..`, no link leading out), else the line is a bad sample naming the split file.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from toolkit.data.images import image_size, read_image
from toolkit.errors import BadSampleError, DataError
from toolkit_plugins.datasets.common import (
    MAX_IMAGE_SIDE,
    BadSamples,
    GtObject,
    PathOutsideRoot,
    RootedPaths,
    coco_ground_truth,
    detection_target,
)

TOLERANCE = 1.0  # pixels a box may stick out of the image (clipped); beyond that it is bad
IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg", ".JPG", ".PNG", ".JPEG")


class VocDataset(torch.utils.data.Dataset):
    """Detection samples of one ImageSets/Main split.

    VOC coordinates are 1-based pixel indices: box = (xmin - 1, ymin - 1, xmax, ymax).
    Difficult objects are in `ground_truth()` with ignore=1, in training targets only with
    `use_difficult`. image_id is the position in the split file.
    """

    task = "detection"

    def __init__(
        self,
        *,
        root: str | Path,
        split: str = "train",
        class_names: Sequence[str],
        use_difficult: bool = False,
        on_bad_sample: str = "error",
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.class_names = list(class_names)
        self.category_ids = list(range(len(self.class_names)))
        self.use_difficult = use_difficult
        try:
            split_file = RootedPaths(self.root / "ImageSets" / "Main").resolve(f"{split}.txt")
        except PathOutsideRoot as exc:
            raise DataError(f"{self.root}: split {split!r}: {exc}") from None
        bad = BadSamples(on_bad_sample, str(split_file))
        _check_layout(self.root, split_file)
        ids = _read_split(split_file)
        folders = _Folders(RootedPaths(self.root / "Annotations"), RootedPaths(self.root / "JPEGImages"))
        label_of = {name: label for label, name in enumerate(self.class_names)}
        self.items: list[dict[str, Any]] = []
        self._objects: list[list[GtObject]] = []
        for image_id, (line, name) in enumerate(ids):
            try:
                xml = folders.annotations.resolve(f"{name}.xml")
            except PathOutsideRoot as exc:
                bad.handle(BadSampleError(str(split_file), f"line {line}: {exc}"))
                continue
            try:
                item, objects = _parse(xml, folders.images, name, image_id, label_of, bad)
            except BadSampleError as error:
                bad.handle(error)
                continue
            self.items.append(item)
            self._objects.append(objects)
        if not self.items:
            raise DataError(
                f"{split_file}: no usable images in the split; check the split file and Annotations/"
            )
        self.skipped = bad.skipped
        bad.warn()
        self._ground_truth: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        item = self.items[index]
        image = read_image(item["path"])
        height, width = image.shape[-2:]
        if (width, height) != (item["width"], item["height"]):
            raise BadSampleError(
                str(item["path"]),
                f"the image is {width}x{height} but {item['xml']} says {item['width']}x{item['height']}; "
                "fix the <size> of the XML",
            )
        train = [o for o in self._objects[index] if self.use_difficult or not o.ignore]
        boxes = np.array([o.box for o in train], dtype=np.float32).reshape(-1, 4)
        labels = np.array([o.label for o in train], dtype=np.int64)
        return image, detection_target(boxes, labels, item["id"], height, width)

    def ground_truth(self) -> dict[str, Any]:
        """COCO-format ground truth; difficult objects have ignore=1."""
        if self._ground_truth is None:
            images = [
                {"id": i["id"], "width": i["width"], "height": i["height"], "file_name": i["path"].name}
                for i in self.items
            ]
            self._ground_truth = coco_ground_truth(images, self._objects, self.class_names)
        return self._ground_truth


def _check_layout(root: Path, split_file: Path) -> None:
    if not root.is_dir():
        raise DataError(f"{root}: VOC root folder not found; check the dataset's 'root' path")
    for folder in ("Annotations", "JPEGImages"):
        if not (root / folder).is_dir():
            raise DataError(
                f"{root / folder}: folder not found; "
                "'root' must hold Annotations/, JPEGImages/ and ImageSets/Main/"
            )
    if not split_file.is_file():
        available = (
            sorted(p.stem for p in split_file.parent.glob("*.txt")) if split_file.parent.is_dir() else []
        )
        hint = f"; available splits: {', '.join(available)}" if available else ""
        raise DataError(f"{split_file}: split file not found; check the dataset's 'split'{hint}")


class _Folders(NamedTuple):
    annotations: RootedPaths
    images: RootedPaths


def _read_split(split_file: Path) -> list[tuple[int, str]]:
    """(line number, image id) of each image the split file lists, first mention only."""
    try:
        lines = split_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{split_file}: cannot read the split file ({exc})") from None
    first: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if line.strip():
            first.setdefault(line.split()[0], number)
    if not first:
        raise DataError(f"{split_file}: the split file lists no images; add image ids, one per line")
    return [(number, name) for name, number in first.items()]


def _parse(
    xml: Path, images: RootedPaths, name: str, image_id: int, label_of: dict[str, int], bad: BadSamples
) -> tuple[dict[str, Any], list[GtObject]]:
    """One image's item and objects; BadSampleError for an unusable XML, bad objects go to `bad`."""
    if not xml.is_file():
        raise BadSampleError(
            str(xml), "annotation file not found; add it or remove the id from the split file"
        )
    try:
        tree = SafeET.parse(xml)
    except DefusedXmlException as exc:
        raise BadSampleError(
            str(xml),
            f"the XML declares entities or external references ({type(exc).__name__}), which are refused "
            "(entity-expansion attack); remove the DOCTYPE/ENTITY declarations",
        ) from None
    except ET.ParseError as exc:
        raise BadSampleError(str(xml), f"malformed XML ({exc}); fix or regenerate the file") from None
    annotation = tree.getroot()
    try:
        path = _image_path(images, name, annotation.findtext("filename"))
    except PathOutsideRoot as exc:
        raise BadSampleError(str(xml), f"the image: {exc}") from None
    width, height = _size(annotation, path, xml)
    objects = []
    for position, obj in enumerate(annotation.iter("object")):
        try:
            objects.append(_object(obj, position, label_of, width, height, xml))
        except BadSampleError as error:
            bad.handle(error)
    item = {"id": image_id, "name": name, "path": path, "xml": xml, "width": width, "height": height}
    return item, objects


def _image_path(images: RootedPaths, name: str, filename: str | None) -> Path:
    """The XML's <filename> when that file exists, else <id>.jpg/.png/.jpeg; <id>.jpg if none exists.

    PathOutsideRoot when a candidate leads out of JPEGImages/.
    """
    candidates = [Path(filename.strip()).name] if filename and filename.strip() else []
    candidates += [f"{name}{suffix}" for suffix in IMAGE_SUFFIXES]
    for candidate in candidates:
        path = images.resolve(candidate)
        if path.is_file():
            return path
    return images.resolve(f"{name}.jpg")


def _size(annotation: ET.Element, path: Path, xml: Path) -> tuple[int, int]:
    """(width, height) from <size>, or from the image header when <size> is missing or zero."""
    sides = []
    for key in ("width", "height"):
        text = annotation.findtext(f"size/{key}") or "0"
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value > MAX_IMAGE_SIDE:
            raise BadSampleError(
                str(xml), f"<size><{key}> is {text.strip()[:40]!r}, not a usable number; fix it"
            )
        sides.append(int(value))
    width, height = sides
    if width > 0 and height > 0:
        return width, height
    return image_size(path)


def _object(
    obj: ET.Element, position: int, label_of: dict[str, int], width: int, height: int, xml: Path
) -> GtObject:
    name = (obj.findtext("name") or "").strip()
    where = f"object #{position} ({name or 'no name'})"
    if name not in label_of:
        raise BadSampleError(
            str(xml),
            f"unknown class {name!r}; add it to class_names ({', '.join(label_of)}) or fix the name",
            annotation=where,
        )
    try:
        xmin, ymin, xmax, ymax = (
            float(obj.findtext(f"bndbox/{k}") or "nan") for k in ("xmin", "ymin", "xmax", "ymax")
        )
    except ValueError:
        xmin = ymin = xmax = ymax = math.nan
    if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)):
        raise BadSampleError(
            str(xml), "missing or non-numeric <bndbox> coordinates; fix the box", annotation=where
        )
    x1, y1, x2, y2 = xmin - 1, ymin - 1, xmax, ymax
    if x2 <= x1 or y2 <= y1:
        raise BadSampleError(
            str(xml),
            f"box ({xmin}, {ymin}, {xmax}, {ymax}) has a non-positive width or height",
            annotation=where,
        )
    if x1 < -TOLERANCE or y1 < -TOLERANCE or x2 > width + TOLERANCE or y2 > height + TOLERANCE:
        raise BadSampleError(
            str(xml),
            f"box ({xmin}, {ymin}, {xmax}, {ymax}) lies outside the {width}x{height} image; fix the box",
            annotation=where,
        )
    box = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise BadSampleError(str(xml), f"box lies outside the {width}x{height} image", annotation=where)
    difficult = (obj.findtext("difficult") or "0").strip() not in ("0", "", "false")
    return GtObject(box, label_of[name], False, difficult)
