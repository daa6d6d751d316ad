"""COCO instances dataset: validated at construction, images decoded on access."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from toolkit.errors import BadSampleError, DataError
from toolkit_plugins.datasets.common import (
    BadSamples,
    BoxQuirks,
    GtObject,
    PathOutsideRoot,
    RootedPaths,
    coco_ground_truth,
    detection_sample,
    finish_index,
    finite,
    flag,
    is_id,
    is_side,
)


class CocoDataset(torch.utils.data.Dataset):
    """Detection samples from a COCO instances file.

    Labels are contiguous (0-based) in category-id order (or `class_names` order);
    `category_ids[label]` is the COCO id. Crowd (and `ignore: 1`) annotations are left out of
    training targets and kept in `ground_truth()`. Boxes follow the box-quirk policy (`BoxQuirks`:
    zero-area dropped, crossing clipped, outside dropped; counted in `dropped_boxes`, `clipped_boxes`).
    """

    task = "detection"

    def __init__(
        self,
        *,
        images: str | Path,
        annotations: str | Path,
        skip_empty: bool = False,
        class_names: Sequence[str] | None = None,
        on_bad_sample: str = "error",
        allow_absolute_paths: bool = False,
    ) -> None:
        self.image_root = Path(images)
        self.annotation_file = Path(annotations)
        source = str(self.annotation_file)
        bad = BadSamples(on_bad_sample, source)
        quirks = BoxQuirks(source)
        if not self.annotation_file.is_file():
            raise DataError(f"{source}: annotation file not found; check the dataset's 'annotations' path")
        if not self.image_root.is_dir():
            raise DataError(f"{self.image_root}: image folder not found; check the dataset's 'images' path")
        data = _read_json(self.annotation_file)
        categories = _categories(data, source)
        self.category_ids, self.class_names = _select(categories, class_names, source)
        label_of = {cat_id: label for label, cat_id in enumerate(self.category_ids)}
        paths = RootedPaths(
            self.image_root, allow_absolute=allow_absolute_paths, absolute_option="allow_absolute_paths"
        )
        image_entries, image_paths = _images(data, paths, bad, source)
        raw_annotations = data["annotations"]
        if not raw_annotations:
            problem = f"{source}: the file has no annotations at all (no image has objects)"
            if bad.mode == "error":
                raise DataError(
                    f"{problem}; add annotations, or set data.on_bad_sample: skip to use it anyway"
                )
            bad.skipped.append(problem)
        by_image = _index(image_entries, raw_annotations, bad, source)
        self.items: list[dict[str, Any]] = []
        self._paths: list[Path] = []
        self._objects: list[list[GtObject]] = []
        for image_id in sorted(image_entries):
            entry = image_entries[image_id]
            objects = []
            for ann in by_image.get(image_id, []):
                obj = _check_annotation(ann, entry, categories, label_of, bad, quirks, source)
                if obj is not None:
                    objects.append(obj)
            if skip_empty and not any(not (o.iscrowd or o.ignore) for o in objects):
                continue
            self.items.append(entry)
            self._paths.append(image_paths[image_id])
            self._objects.append(objects)
        if not self.items:
            raise DataError(
                f"{source}: no usable images"
                + (" with objects (skip_empty is set)" if skip_empty else "")
                + "; check the file's 'images' and 'annotations'"
            )
        self._ground_truth: dict[str, Any] | None = None
        finish_index(self, bad, quirks)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        entry = self.items[index]
        train = [o for o in self._objects[index] if not (o.iscrowd or o.ignore)]
        return detection_sample(
            self._paths[index],
            train,
            entry["id"],
            (entry["width"], entry["height"]),
            indexed_by=str(self.annotation_file),
            fix=f"fix the entry of image id {entry['id']} or the image",
        )

    def ground_truth(self) -> dict[str, Any]:
        """COCO-format ground truth of the dataset's images, crowd annotations included (iscrowd=1)."""
        if self._ground_truth is None:
            images = [{k: e[k] for k in ("id", "width", "height", "file_name")} for e in self.items]
            self._ground_truth = coco_ground_truth(images, self._objects, self.class_names)
        return self._ground_truth


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}); fix the file"
        ) from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply for a COCO instances file; fix the file") from None
    except ValueError as exc:  # an integer beyond Python's digit limit
        reason = "an integer of thousands of digits" if "digits" in str(exc) else str(exc)
        raise DataError(f"{path}: refused JSON: {reason}; fix the file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the annotation file ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a COCO instances object, got a JSON {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: '{key}' is missing or not a list; is this a COCO instances file?")
    return data


def _categories(data: dict[str, Any], source: str) -> dict[int, str]:
    categories: dict[int, str] = {}
    for position, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not is_id(cat.get("id")) or not _name(cat.get("name")):
            raise DataError(
                f"{source}: category #{position} needs an integer 'id' and a non-empty string 'name', "
                f"got {_show(cat)}"
            )
        if cat["id"] in categories:
            raise DataError(f"{source}: category id {cat['id']} is listed twice; make the ids unique")
        categories[cat["id"]] = cat["name"]
    if not categories:
        raise DataError(f"{source}: the file lists no categories; add its 'categories'")
    return categories


def _select(
    categories: dict[int, str], class_names: Sequence[str] | None, source: str
) -> tuple[list[int], list[str]]:
    """(category ids, names) in label order: all by id, or the named ones in the given order."""
    if class_names is None:
        ids = sorted(categories)
        return ids, [categories[i] for i in ids]
    id_of = {name: cat_id for cat_id, name in categories.items()}
    missing = [name for name in class_names if name not in id_of]
    if missing:
        raise DataError(
            f"{source}: class_names {missing} are not categories of the file; "
            f"its categories are: {', '.join(categories[i] for i in sorted(categories))}"
        )
    return [id_of[name] for name in class_names], list(class_names)


def _images(
    data: dict[str, Any], paths: RootedPaths, bad: BadSamples, source: str
) -> tuple[dict[int, dict[str, Any]], dict[int, Path]]:
    """The well-formed image entries by id, and the path of each (under the image folder)."""
    images: dict[int, dict[str, Any]] = {}
    found: dict[int, Path] = {}
    for position, entry in enumerate(data["images"]):
        what = f"image entry #{position}"
        ok = isinstance(entry, dict) and is_id(entry.get("id")) and isinstance(entry.get("file_name"), str)
        if not ok or not all(is_side(entry.get(k)) for k in ("width", "height")):
            reason = (
                "an image needs an integer 'id', a string 'file_name' and positive integer 'width' and "
                f"'height', got {_show(entry)}"
            )
            bad.handle(BadSampleError(source, f"{what}: {reason}; fix or remove the entry"))
            continue
        what = f"{what} (id {entry['id']})"
        if entry["id"] in images:
            bad.handle(BadSampleError(source, f"{what}: duplicate image id; fix or remove the entry"))
            continue
        try:
            found[entry["id"]] = paths.resolve(entry["file_name"])
        except PathOutsideRoot as exc:
            bad.handle(BadSampleError(source, f"{what}: {exc}"))
            continue
        images[entry["id"]] = entry
    if not images:
        raise DataError(f"{source}: the file lists no usable images; add its 'images'")
    return images, found


def _index(
    images: dict[int, dict[str, Any]], annotations: list[Any], bad: BadSamples, source: str
) -> dict[int, list[dict[str, Any]]]:
    """The well-formed annotations (an integer id, a known image id) grouped by image id, in file order."""
    by_image: dict[int, list[dict[str, Any]]] = {}
    for position, ann in enumerate(annotations):
        if not isinstance(ann, dict) or not is_id(ann.get("id")):
            bad.handle(
                BadSampleError(source, "an annotation needs an integer 'id'", annotation=f"#{position}")
            )
        elif not is_id(ann.get("image_id")) or ann["image_id"] not in images:
            bad.handle(
                BadSampleError(
                    source,
                    f"image_id {_show(ann.get('image_id'))} is not an image of the file; fix or remove it",
                    annotation=f"id {ann['id']}",
                )
            )
        else:
            by_image.setdefault(ann["image_id"], []).append(ann)
    return by_image


def _check_annotation(
    ann: dict[str, Any],
    image: dict[str, Any],
    categories: dict[int, str],
    label_of: dict[int, int],
    bad: BadSamples,
    quirks: BoxQuirks,
    source: str,
) -> GtObject | None:
    """The annotation as a GtObject (box fitted to the image by `quirks`), None if bad (skipped), not
    selected or dropped (a quirk)."""
    where = f"id {ann['id']}"
    file_name = image["file_name"]
    width, height = image["width"], image["height"]
    category = ann.get("category_id")
    if not is_id(category) or category not in categories:
        known = ", ".join(str(c) for c in sorted(categories))
        return _bad(bad, source, f"unknown category_id {_show(category)} (known: {known})", where, file_name)
    if category not in label_of:
        return None  # a category left out by class_names
    bbox = ann.get("bbox")
    numbers = [finite(v) for v in bbox] if isinstance(bbox, list) and len(bbox) == 4 else [None]
    if any(v is None for v in numbers):
        return _bad(
            bad, source, f"missing or malformed bbox {_show(bbox)} (expected [x, y, w, h])", where, file_name
        )
    x, y, w, h = numbers  # type: ignore[misc]
    area = finite(ann["area"]) if "area" in ann else None
    if "area" in ann and (area is None or area < 0):
        return _bad(bad, source, f"area {_show(ann['area'])} is not a number >= 0", where, file_name)
    iscrowd, ignore = flag(ann.get("iscrowd", 0)), flag(ann.get("ignore", 0))
    if iscrowd is None or ignore is None:
        key = "iscrowd" if iscrowd is None else "ignore"
        return _bad(bad, source, f"{key} {_show(ann[key])} is not 0 or 1", where, file_name)
    shown = f"annotation id {ann['id']} (image {file_name}): bbox {bbox}"
    box = quirks.fit((x, y, x + w, y + h), width, height, shown)
    if box is None:
        return None
    return GtObject(box, label_of[category], iscrowd, ignore, area)


def _name(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _show(value: Any) -> str:
    """A value quoted for a message, shortened when long."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _bad(bad: BadSamples, source: str, reason: str, where: str, file_name: str) -> None:
    bad.handle(
        BadSampleError(
            source, f"{reason} (image {file_name}); fix or remove the annotation", annotation=where
        )
    )
    return None
