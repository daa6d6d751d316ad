"""Pascal VOC dataset: every XML parsed (with defusedxml) and validated at construction.

Standard layout: the split file's ids name `Annotations/<id>.xml` and `JPEGImages/<id>.<ext>`.
Loose layout (no ImageSets/Main, or a split option given): XML files beside the images, or in an
`Annotations/` (`annotations/`) folder beside an image folder (`JPEGImages/`, `images/`), the split
chosen by a list file, a glob or a seeded fraction. Every path must stay under the root (no `..`, no
link leading out), else the entry is a bad sample naming where it came from.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from toolkit.data.images import image_size
from toolkit.errors import BadSampleError, DataError
from toolkit_plugins.datasets.common import (
    MAX_IMAGE_SIDE,
    ZERO_AREA,
    BadSamples,
    BoxQuirks,
    GtObject,
    PathOutsideRoot,
    RootedPaths,
    coco_ground_truth,
    detection_sample,
    finish_index,
    index_samples,
    seeded_split,
)

IMAGE_SUFFIXES = tuple(
    suffix
    for lower in (".jpg", ".png", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
    for suffix in (lower, lower.upper())
)
#: the largest annotation XML (bytes) and split list file read
MAX_XML_BYTES = 16 << 20
MAX_SPLIT_BYTES = 256 << 20
#: folder names of the loose layout, looked for under the root in this order
ANNOTATION_FOLDERS = ("Annotations", "annotations")
IMAGE_FOLDERS = ("JPEGImages", "images", "Images")


class _Entry(NamedTuple):
    """One image of the split: its id (the XML's stem), the XML, and where its image may lie."""

    name: str
    xml: Path
    image_places: tuple[Path, ...]  # folders (under the root) looked in for the image, in order


class VocDataset(torch.utils.data.Dataset):
    """Detection samples of one split of a VOC-style folder.

    VOC coordinates are 1-based pixel indices: box = (xmin - 1, ymin - 1, xmax, ymax). Boxes follow
    the box-quirk policy (`BoxQuirks`: zero-area or inverted dropped, crossing clipped, outside
    dropped; counted in `dropped_boxes` and `clipped_boxes`); xmax <= xmin or ymax <= ymin counts
    as zero-area (a point or a line from a stray click, though 1-based it would be 1 pixel wide).
    Difficult objects are in `ground_truth()` with ignore=1, in training targets only with
    `use_difficult`. image_id is the position in the split (standard layout: the split file; loose:
    the sorted XML files).
    `class_names` None: the names found in the split's XML files, sorted.
    """

    task = "detection"

    def __init__(
        self,
        *,
        root: str | Path,
        split: str = "train",
        class_names: Sequence[str] | None = None,
        use_difficult: bool = False,
        split_file: str | None = None,
        split_glob: str | None = None,
        val_fraction: float | None = None,
        seed: int = 0,
        on_bad_sample: str = "error",
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.use_difficult = use_difficult
        if not self.root.is_dir():
            raise DataError(f"{self.root}: VOC root folder not found; check the dataset's 'root' path")
        options = {"split_file": split_file, "split_glob": split_glob, "val_fraction": val_fraction}
        chosen = [key for key, value in options.items() if value is not None]
        if len(chosen) > 1:
            raise DataError(f"{self.root}: give one of split_file, split_glob and val_fraction, not {chosen}")
        self.layout = "standard" if not chosen and (self.root / "ImageSets" / "Main").is_dir() else "loose"
        if self.layout == "standard":
            source, entries = _standard_entries(self.root, split)
        else:
            source, entries = _loose_entries(self.root, split, split_file, split_glob, val_fraction, seed)
        bad = BadSamples(on_bad_sample, source)
        quirks = BoxQuirks(source)
        parsed = []
        for image_id, entry in enumerate(entries):
            try:
                parsed.append((image_id, entry, _read_xml(entry)))
            except BadSampleError as error:
                bad.handle(error)
        if class_names is None:
            class_names = _names_found([annotation for _, _, annotation in parsed], source)
        self.class_names = list(class_names)
        self.category_ids = list(range(len(self.class_names)))
        label_of = {name: label for label, name in enumerate(self.class_names)}
        loose = self.layout == "loose"
        self.items, self._objects = index_samples(
            parsed,
            lambda row: _parse(*row, label_of, bad, quirks, require_image=loose),
            bad,
        )
        if not self.items:
            raise DataError(f"{source}: no usable images in the split; check the split and the XML files")
        self._ground_truth: dict[str, Any] | None = None
        finish_index(self, bad, quirks)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        item = self.items[index]
        train = [o for o in self._objects[index] if self.use_difficult or not o.ignore]
        size = (item["width"], item["height"])
        return detection_sample(
            item["path"],
            train,
            item["id"],
            size,
            indexed_by=str(item["xml"]),
            fix="fix the <size> of the XML",
        )

    def ground_truth(self) -> dict[str, Any]:
        """COCO-format ground truth; difficult objects have ignore=1."""
        if self._ground_truth is None:
            images = [
                {"id": i["id"], "width": i["width"], "height": i["height"], "file_name": i["path"].name}
                for i in self.items
            ]
            self._ground_truth = coco_ground_truth(images, self._objects, self.class_names)
        return self._ground_truth


# -- which XML files: the standard layout ----------------------------------------------------------
def _standard_entries(root: Path, split: str) -> tuple[str, list[_Entry | BadSampleError]]:
    try:
        split_file = RootedPaths(root / "ImageSets" / "Main").resolve(f"{split}.txt")
    except PathOutsideRoot as exc:
        raise DataError(f"{root}: split {split!r}: {exc}") from None
    for folder in ("Annotations", "JPEGImages"):
        if not (root / folder).is_dir():
            raise DataError(
                f"{root / folder}: folder not found; "
                "'root' must hold Annotations/, JPEGImages/ and ImageSets/Main/ (or use the loose "
                "layout: docs/data.md)"
            )
    if not split_file.is_file():
        available = sorted(p.stem for p in split_file.parent.glob("*.txt"))
        hint = f"; available splits: {', '.join(available)}" if available else ""
        raise DataError(f"{split_file}: split file not found; check the dataset's 'split'{hint}")
    annotations, images = RootedPaths(root / "Annotations"), root / "JPEGImages"
    entries: list[_Entry | BadSampleError] = []
    for line, name in _read_list(split_file):
        try:
            entries.append(_Entry(name, annotations.resolve(f"{name}.xml"), (images,)))
        except PathOutsideRoot as exc:
            entries.append(BadSampleError(str(split_file), f"line {line}: {exc}"))
    return str(split_file), entries


def _read_list(path: Path) -> list[tuple[int, str]]:
    """(line number, first word) of each non-empty line of a split list file, first mention only."""
    try:
        if path.stat().st_size > MAX_SPLIT_BYTES:
            raise DataError(f"{path}: larger than {MAX_SPLIT_BYTES} bytes; is it really a split list?")
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the split file ({exc})") from None
    first: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if line.strip():
            first.setdefault(line.split()[0], number)
    if not first:
        raise DataError(f"{path}: the split file lists no images; add image ids, one per line")
    return [(number, name) for name, number in first.items()]


# -- which XML files: the loose layout -------------------------------------------------------------
def _loose_entries(
    root: Path,
    split: str,
    split_file: str | None,
    split_glob: str | None,
    val_fraction: float | None,
    seed: int,
) -> tuple[str, list[_Entry | BadSampleError]]:
    """The entries of a folder of XML files without ImageSets (see the module docstring)."""
    rooted = RootedPaths(root)
    annotations = next((root / f for f in ANNOTATION_FOLDERS if (root / f).is_dir()), root)
    images = next((root / f for f in IMAGE_FOLDERS if (root / f).is_dir()), None)
    for folder in (annotations, images):
        if folder is not None and folder != root:
            _inside(rooted, folder, root)
    source = str(annotations)
    if split_file is not None:
        try:
            listed = rooted.resolve(split_file)
        except PathOutsideRoot as exc:
            raise DataError(f"{root}: split_file: {exc}") from None
        if not listed.is_file():
            raise DataError(f"{listed}: split_file not found; name a list file relative to {root}")
        source = str(listed)
        names = [(f"line {line}: ", _xml_name(word)) for line, word in _read_list(listed)]
    else:
        pattern = split_glob or "*.xml"
        if os.path.isabs(pattern) or os.pardir in Path(pattern).parts:
            raise DataError(f"{root}: split_glob {pattern!r} must be relative and stay under {annotations}")
        found = sorted(
            str(p.relative_to(annotations))
            for p in annotations.glob(pattern)
            if p.suffix.lower() == ".xml" and not p.name.startswith(".")
        )
        if not found:
            what = "check split_glob" if split_glob else "is this a VOC folder?"
            raise DataError(f"{annotations}: no XML files match {pattern!r}; {what}")
        if val_fraction is not None:
            found = seeded_split(found, val_fraction, seed, split, source)
        elif split_glob is None and split != "train":
            raise DataError(
                f"{root}: no ImageSets/Main/{split}.txt; in a folder of XML files the whole folder is the "
                "train split: choose the images of this split with split_file, split_glob or val_fraction "
                "(and seed), or point root at a folder of its own"
            )
        names = [("", name) for name in found]
    entries: list[_Entry | BadSampleError] = []
    annotation_paths = RootedPaths(annotations)
    for line, name in names:
        try:
            xml = annotation_paths.resolve(name)
        except PathOutsideRoot as exc:
            entries.append(BadSampleError(source, f"{line}{exc}"))
            continue
        relative = xml.parent.relative_to(annotations)
        places = (xml.parent,) if images is None else (images / relative, xml.parent)
        entries.append(_Entry(xml.stem, xml, places))
    return source, entries


def _inside(rooted: RootedPaths, folder: Path, root: Path) -> None:
    try:
        rooted.resolve(folder.name)
    except PathOutsideRoot as exc:
        raise DataError(f"{root}: folder {folder.name}/: {exc}") from None


def _xml_name(word: str) -> str:
    """A split-file entry as the XML's name: `a`, `a.xml` and `a.jpg` all name `a.xml`."""
    suffix = os.path.splitext(word)[1]
    if suffix.lower() == ".xml":
        return word
    if suffix in IMAGE_SUFFIXES:
        return word[: -len(suffix)] + ".xml"
    return f"{word}.xml"


# -- reading one XML -------------------------------------------------------------------------------
def _read_xml(entry: _Entry | BadSampleError) -> ET.Element:
    """The parsed XML root; BadSampleError for a missing, huge, malformed or entity-declaring file."""
    if isinstance(entry, BadSampleError):
        raise entry
    xml = entry.xml
    if not xml.is_file():
        raise BadSampleError(str(xml), "annotation file not found; add it or remove the id from the split")
    if xml.stat().st_size > MAX_XML_BYTES:
        raise BadSampleError(str(xml), f"larger than {MAX_XML_BYTES} bytes; is it really a VOC annotation?")
    try:
        return SafeET.parse(xml).getroot()
    except DefusedXmlException as exc:
        raise BadSampleError(
            str(xml),
            f"the XML declares entities or external references ({type(exc).__name__}), which are refused "
            "(entity-expansion attack); remove the DOCTYPE/ENTITY declarations",
        ) from None
    except ET.ParseError as exc:
        raise BadSampleError(str(xml), f"malformed XML ({exc}); fix or regenerate the file") from None


def _names_found(annotations: list[ET.Element], source: str) -> list[str]:
    names = {
        (obj.findtext("name") or "").strip()
        for annotation in annotations
        for obj in annotation.iter("object")
    }
    names.discard("")
    if not names:
        raise DataError(f"{source}: no object names in the XML files; set class_names (or model.class_names)")
    return sorted(names)


def _parse(
    image_id: int,
    entry: _Entry,
    annotation: ET.Element,
    label_of: dict[str, int],
    bad: BadSamples,
    quirks: BoxQuirks,
    *,
    require_image: bool,
) -> tuple[dict[str, Any], list[GtObject]]:
    """One image's item and objects; BadSampleError for an unusable XML, bad objects go to `bad`."""
    xml = entry.xml
    try:
        path = _image_path(entry, annotation.findtext("filename"), require_image)
    except PathOutsideRoot as exc:
        raise BadSampleError(str(xml), f"the image: {exc}") from None
    width, height = _size(annotation, path, xml)
    objects = []
    for position, obj in enumerate(annotation.iter("object")):
        try:
            found = _object(obj, position, label_of, width, height, xml, quirks)
        except BadSampleError as error:
            bad.handle(error)
            continue
        if found is not None:
            objects.append(found)
    item = {"id": image_id, "name": entry.name, "path": path, "xml": xml, "width": width, "height": height}
    return item, objects


def _image_path(entry: _Entry, filename: str | None, required: bool) -> Path:
    """The XML's <filename> when that file exists, else <id> with a common image suffix, in each
    folder of `entry.image_places` in turn. When none exists: the first folder's <id>.jpg, or
    (`required`) a BadSampleError naming the places looked in.

    PathOutsideRoot when a candidate leads out of its folder.
    """
    candidates = [Path(filename.strip()).name] if filename and filename.strip() else []
    candidates += [f"{entry.name}{suffix}" for suffix in IMAGE_SUFFIXES]
    for folder in entry.image_places:
        paths = RootedPaths(folder)
        for candidate in candidates:
            path = paths.resolve(candidate)
            if path.is_file():
                return path
    if required:
        shown = " or ".join(str(folder) for folder in entry.image_places)
        named = f"{candidates[0]} or " if filename and filename.strip() else ""
        raise BadSampleError(
            str(entry.xml), f"no image {named}{entry.name}.<jpg|png|...> in {shown}; add it or remove the XML"
        )
    return RootedPaths(entry.image_places[0]).resolve(f"{entry.name}.jpg")


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
    obj: ET.Element,
    position: int,
    label_of: dict[str, int],
    width: int,
    height: int,
    xml: Path,
    quirks: BoxQuirks,
) -> GtObject | None:
    """The object with its box fitted to the image; None when the box is dropped (a quirk)."""
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
    shown = f"{xml}: {where}: <bndbox> ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g})"
    if xmax <= xmin or ymax <= ymin:  # inverted, or a point (1-based, but a 1-pixel side is a stray click)
        return quirks.drop(ZERO_AREA, shown)
    box = quirks.fit((xmin - 1, ymin - 1, xmax, ymax), width, height, shown)
    if box is None:
        return None
    difficult = (obj.findtext("difficult") or "0").strip() not in ("0", "", "false")
    return GtObject(box, label_of[name], False, difficult)
