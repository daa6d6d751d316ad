"""Write a dataset to disk as COCO, Pascal VOC, Ultralytics YOLO or an image folder (images saved
losslessly as PNG).

Detection datasets are written from their `ground_truth()` (crowd and difficult objects
included) when they have one, else from their targets. Files are named by dataset index.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from toolkit.contracts import HasGroundTruth
from toolkit.data.categories import dataset_category_ids
from toolkit.data.targets import targets_have_boxes
from toolkit.errors import ToolkitError
from toolkit.spec.files import load_yaml


def write_coco(dataset: Any, out_dir: str | Path) -> Path:
    """Write `out_dir/images/NNNNNN.png` and `out_dir/annotations/instances.json`; return `out_dir`.

    Category ids are the dataset's own (`category_ids`, e.g. a COCO source's), else the labels
    0..N-1: the ids a model trained on the dataset writes in its results, so those score against
    this file as they are. Names come from `class_names`; image ids are kept; crowd objects keep
    iscrowd=1 and ignored (e.g. VOC difficult) ones get `"ignore": 1`.
    """

    _require(dataset, boxes=True)
    category_of = dataset_category_ids(dataset) or list(range(len(dataset.class_names)))
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index, image, image_id, objects in _detection_samples(dataset, "COCO"):
        file_name = f"{index:06d}.png"
        height, width = _save_png(image, out / "images" / file_name)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for x1, y1, x2, y2, label, iscrowd, ignore in objects:
            annotation = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": category_of[label],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": int(iscrowd),
            }
            if ignore:
                annotation["ignore"] = 1
            annotations.append(annotation)
    categories = [{"id": category_of[label], "name": name} for label, name in enumerate(dataset.class_names)]
    document = {"images": images, "annotations": annotations, "categories": categories}
    (out / "annotations" / "instances.json").write_text(json.dumps(document), encoding="utf-8")
    return out


def write_voc(dataset: Any, out_dir: str | Path, split: str = "train") -> Path:
    """Write `out_dir/VOCdevkit/VOC2012/{Annotations,JPEGImages,ImageSets/Main}`; return that VOC2012 root.

    Boxes are written as 1-based pixel indices (xmin = x1 + 1, ymin = y1 + 1, xmax = x2, ymax = y2);
    crowd and ignored objects are written as difficult. Images are PNG files in JPEGImages/.
    """
    _require(dataset, boxes=True)
    root = Path(out_dir) / "VOCdevkit" / "VOC2012"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    names = []
    for index, image, _, objects in _detection_samples(dataset, "VOC"):
        name = f"{index:06d}"
        height, width = _save_png(image, root / "JPEGImages" / f"{name}.png")
        xml = _voc_xml(name, width, height, objects, dataset.class_names)
        (root / "Annotations" / f"{name}.xml").write_text(xml, encoding="utf-8")
        names.append(name)
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text(
        "".join(f"{n}\n" for n in names), encoding="utf-8"
    )
    return root


def write_yolo(dataset: Any, out_dir: str | Path, split: str = "train") -> Path:
    """Write `out_dir/images/<split>/NNNNNN.png`, `out_dir/labels/<split>/NNNNNN.txt` and
    `out_dir/data.yaml`; return `out_dir`.

    Labels are `class cx cy w h`, normalized to the image; an image without objects gets an empty
    label file. YOLO has no crowd or difficult flag: those objects are left out. data.yaml holds
    `path` (the absolute folder, as Ultralytics expects), one key per split written so far (a
    data.yaml of an earlier export to the same folder, with the same names, is extended: export
    train, then val) and `names` as a list.
    """
    import yaml

    _require(dataset, boxes=True)
    if split not in ("train", "val", "test"):
        raise ToolkitError(f"a YOLO split is train, val or test, got {split!r}")
    out = Path(out_dir)
    names = [str(name) for name in dataset.class_names]
    document = _existing_yolo_yaml(out / "data.yaml", names)
    images, labels = out / "images" / split, out / "labels" / split
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for index, image, _, objects in _detection_samples(dataset, "YOLO"):
        height, width = _save_png(image, images / f"{index:06d}.png")
        lines = [
            f"{label} {_fraction((x1 + x2) / 2 / width)} {_fraction((y1 + y2) / 2 / height)} "
            f"{_fraction((x2 - x1) / width)} {_fraction((y2 - y1) / height)}\n"
            for x1, y1, x2, y2, label, iscrowd, ignore in objects
            if not (iscrowd or ignore)
        ]
        (labels / f"{index:06d}.txt").write_text("".join(lines), encoding="utf-8")
    document["path"] = str(out.resolve())
    document[split] = f"images/{split}"
    document["names"] = names
    ordered = {key: document[key] for key in ("path", "train", "val", "test", "names") if key in document}
    (out / "data.yaml").write_text(
        yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    return out


def _existing_yolo_yaml(path: Path, names: list[str]) -> dict[str, Any]:
    """The data.yaml an earlier export wrote there (same names), to extend; {} when there is none."""
    if not path.exists():
        return {}

    try:
        document = load_yaml(path.read_text(encoding="utf-8"))
    except Exception as exc:
        raise ToolkitError(f"{path}: exists and cannot be read ({exc}); export to a new folder") from None
    if not isinstance(document, dict) or document.get("names") != names:
        raise ToolkitError(
            f"{path}: exists with other names than the dataset's {names}; export to a new folder"
        )
    return document


def _fraction(value: float) -> str:
    """A normalized coordinate with 8 decimals (well below a pixel), trailing zeros removed."""
    text = f"{min(max(value, 0.0), 1.0):.8f}".rstrip("0").rstrip(".")
    return text or "0"


def write_image_folder(dataset: Any, out_dir: str | Path) -> Path:
    """Write a classification dataset as `out_dir/CLASS/NNNNNN.png`; return `out_dir`."""
    _require(dataset, boxes=False)
    out = Path(out_dir)
    for name in dataset.class_names:
        (out / name).mkdir(parents=True, exist_ok=True)
    for index in _progress(range(len(dataset)), len(dataset), "image folder"):
        image, label = dataset[index]
        _save_png(image, out / dataset.class_names[int(label)] / f"{index:06d}.png")
    return out


Object = tuple[float, float, float, float, int, bool, bool]  # x1, y1, x2, y2, label, iscrowd, ignore


def _detection_samples(dataset: Any, what: str) -> Iterator[tuple[int, Any, int, list[Object]]]:
    """(index, image, image_id, objects) for every sample; objects from ground_truth() when available."""
    per_image: dict[int, list[Object]] | None = None
    if isinstance(dataset, HasGroundTruth):
        per_image = defaultdict(list)
        for ann in dataset.ground_truth()["annotations"]:
            x, y, w, h = (float(v) for v in ann["bbox"])
            flags = (bool(ann.get("iscrowd", 0)), bool(ann.get("ignore", 0)))
            per_image[ann["image_id"]].append((x, y, x + w, y + h, int(ann["category_id"]), *flags))
    for index in _progress(range(len(dataset)), len(dataset), what):
        image, target = dataset[index]
        image_id = int(target["image_id"])
        if per_image is not None:
            objects = per_image.get(image_id, [])
        else:
            boxes = target["boxes"].tolist()
            objects = [
                (*box, int(label), False, False)
                for box, label in zip(boxes, target["labels"].tolist(), strict=True)
            ]
        yield index, image, image_id, objects


def _voc_xml(name: str, width: int, height: int, objects: list[Object], class_names: list[str]) -> str:
    parts = [
        "<annotation>",
        "  <folder>VOC2012</folder>",
        f"  <filename>{name}.png</filename>",
        f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
        "  <segmented>0</segmented>",
    ]
    for x1, y1, x2, y2, label, iscrowd, ignore in objects:
        parts += [
            "  <object>",
            f"    <name>{escape(class_names[label])}</name>",
            "    <pose>Unspecified</pose>",
            "    <truncated>0</truncated>",
            f"    <difficult>{int(iscrowd or ignore)}</difficult>",
            f"    <bndbox><xmin>{_number(x1 + 1)}</xmin><ymin>{_number(y1 + 1)}</ymin>"
            f"<xmax>{_number(x2)}</xmax><ymax>{_number(y2)}</ymax></bndbox>",
            "  </object>",
        ]
    parts.append("</annotation>\n")
    return "\n".join(parts)


def _number(value: float) -> str:
    """Integers without a decimal point (as VOC writes them), other values exactly (repr)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _save_png(image: Any, path: Path) -> tuple[int, int]:
    """Save a uint8 [3,H,W] tensor as PNG; return (height, width)."""
    from PIL import Image

    array = image.permute(1, 2, 0).contiguous().numpy()
    Image.fromarray(array).save(path, format="PNG", compress_level=1)
    return array.shape[0], array.shape[1]


def _require(dataset: Any, *, boxes: bool) -> None:
    """A box format (COCO, VOC) needs box targets; the folder format one label per image."""

    if targets_have_boxes(dataset) != boxes:
        wanted, instead = (
            ("box targets", "--format folder")
            if boxes
            else ("one label per image", "--format coco or voc (or yolo)")
        )
        raise ToolkitError(
            f"this format needs a dataset with {wanted}; {type(dataset).__name__} (task "
            f"{dataset.task!r}) has not; use {instead}"
        )


def _progress(items: Iterable[int], total: int, what: str) -> Iterable[int]:
    """A tqdm bar when tqdm is installed and stderr is a terminal; the plain iterable otherwise."""
    if not sys.stderr.isatty():
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, total=total, desc=f"writing {what}", unit="image")
