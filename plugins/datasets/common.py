"""Shared by the dataset implementations: the bad-sample policy, the box-quirk policy, paths kept
under a dataset's root, checked annotation values, seeded splits, detection targets, COCO ground truth."""

from __future__ import annotations

import math
import os
import random
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePath
from typing import Any, NamedTuple

import numpy as np
import torch
from torchvision import tv_tensors

from toolkit.data.images import read_image
from toolkit.errors import BadSampleError, DataError, ToolkitError

ON_BAD_SAMPLE = ("error", "skip")


class DataWarning(UserWarning):
    """Bad samples or annotations were skipped while indexing a dataset."""


class BadSamples:
    """Applies `on_bad_sample` at index time: raise the first BadSampleError, or record and skip it."""

    def __init__(self, on_bad_sample: str, source: str) -> None:
        if on_bad_sample not in ON_BAD_SAMPLE:
            raise ToolkitError(f"on_bad_sample must be 'error' or 'skip', got {on_bad_sample!r}")
        self.mode = on_bad_sample
        self.source = source
        self.skipped: list[str] = []

    def handle(self, error: BadSampleError) -> None:
        """Raise `error` (mode "error") or record its message (mode "skip")."""
        if self.mode == "error":
            raise error
        self.skipped.append(str(error))

    def warn(self, what: str = "bad annotations or samples") -> None:
        """One warning summarizing what was skipped (nothing when nothing was)."""
        if self.skipped:
            warnings.warn(
                f"{self.source}: skipped {len(self.skipped)} {what} (first: {self.skipped[0]}); "
                "fix them, or set data.on_bad_sample: error to stop at the first one",
                DataWarning,
                stacklevel=3,
            )


#: how far (pixels) a box may cross the border without counting as clipped (float rounding, e.g. of
#: normalized YOLO coordinates); it is clipped all the same
CLIP_SLACK = 1e-3
ZERO_AREA = "zero-area or inverted"
OUTSIDE = "wholly outside the image"


def finish_index(dataset: Any, bad: BadSamples, quirks: BoxQuirks) -> None:
    """End a detection dataset's indexing: record what was skipped, dropped and clipped on it
    (`skipped`, `dropped_boxes`, `clipped_boxes`) and warn once for each."""
    dataset.skipped = bad.skipped
    dataset.dropped_boxes = quirks.dropped_boxes
    dataset.clipped_boxes = quirks.clipped
    bad.warn()
    quirks.warn()


class BoxQuirks:
    """The box policy of the detection datasets (COCO, VOC, YOLO alike), with counts and one warning.

    A zero-area or inverted box is dropped, a box crossing the image border is clipped to the
    image, a box wholly outside the image is dropped; the image always stays. Malformed values
    (non-numeric, NaN, missing) are not quirks: they are bad samples (BadSamples).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.dropped: Counter[str] = Counter()  # reason -> boxes
        self.clipped = 0
        self.first_dropped: str | None = None
        self.first_clipped: str | None = None

    @property
    def dropped_boxes(self) -> int:
        return sum(self.dropped.values())

    def fit(
        self, box: Sequence[float], width: float, height: float, where: str
    ) -> tuple[float, float, float, float] | None:
        """The XYXY pixel `box` clipped to the `width` x `height` image, or None when it is dropped
        (`where` names the annotation, with its values as written, in the warning)."""
        x1, y1, x2, y2 = (float(v) for v in box)
        if not (x2 > x1 and y2 > y1):
            return self.drop(ZERO_AREA, where)
        fitted = (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(x2, width), min(y2, height))
        if not (fitted[2] > fitted[0] and fitted[3] > fitted[1]):
            return self.drop(OUTSIDE, f"{where} in a {width:g}x{height:g} image")
        if max(-x1, -y1, x2 - width, y2 - height) > CLIP_SLACK:
            self.clipped += 1
            if self.first_clipped is None:
                self.first_clipped = f"{where} in a {width:g}x{height:g} image"
        return fitted

    def drop(self, reason: str, what: str) -> None:
        """Count a dropped box (`reason`: ZERO_AREA, OUTSIDE or another short phrase)."""
        self.dropped[reason] += 1
        if self.first_dropped is None:
            self.first_dropped = f"{what} ({reason})"
        return None

    def summary(self) -> str | None:
        """One line on what was dropped and clipped; None when nothing was."""
        parts = []
        if self.dropped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.dropped.items()))
            parts.append(f"dropped {_boxes(self.dropped_boxes)} ({reasons}; first: {self.first_dropped})")
        if self.clipped:
            parts.append(
                f"clipped {_boxes(self.clipped)} crossing the image border to the image "
                f"(first: {self.first_clipped})"
            )
        return f"{self.source}: {' and '.join(parts)}" if parts else None

    def warn(self) -> None:
        """One DataWarning summarizing the dropped and clipped boxes (nothing when there were none)."""
        text = self.summary()
        if text:
            warnings.warn(
                f"{text}; the images stay. Fix the annotations to silence this (docs/data.md: box quirks)",
                DataWarning,
                stacklevel=3,
            )


def _boxes(count: int) -> str:
    return f"{count} box" if count == 1 else f"{count} boxes"


def seeded_split(names: Sequence[str], val_fraction: float, seed: int, split: str, source: str) -> list[str]:
    """The `split` ('train' or 'val') part of `names`: a seeded permutation puts round(n *
    val_fraction) names (at least 1, and 1 fewer than all, when there are 2 or more) in val and the
    rest in train. Deterministic, disjoint, covering all; returned in the order of `names`."""
    if split not in ("train", "val"):
        raise DataError(f"{source}: with val_fraction the split must be 'train' or 'val', got {split!r}")
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"{source}: val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    ordered = sorted(set(names))
    count = round(len(ordered) * val_fraction)
    if len(ordered) >= 2:
        count = min(max(count, 1), len(ordered) - 1)
    order = list(range(len(ordered)))
    random.Random(seed).shuffle(order)
    val = {ordered[i] for i in order[:count]}
    return [name for name in names if (name in val) == (split == "val")]


class PathOutsideRoot(ValueError):
    """A path a dataset file names that is not allowed (leaves the root, absolute, malformed)."""


def is_inside(path: str, folder: str) -> bool:
    """Whether the (real) `path` is `folder` or lies below it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class RootedPaths:
    """Resolves the relative paths a dataset file names under `root`; refuses any that leave it.

    A name is checked as written first (no absolute paths unless `allow_absolute`, no `..` out of
    the root) without touching the file system, then through links: the real path of the file and
    of its folder must stay under the real path of the root. Only `lstat`s happen here: nothing is
    opened.
    """

    def __init__(
        self, root: str | Path, *, allow_absolute: bool = False, absolute_option: str | None = None
    ) -> None:
        self.root = Path(root)
        self.real_root = os.path.realpath(self.root)
        self.allow_absolute = allow_absolute
        self.absolute_option = absolute_option  # the dataset option that allows absolute names
        self._real_folders: dict[str, str] = {}

    def resolve(self, name: Any) -> Path:
        """The path `name` denotes (under the root); PathOutsideRoot with the reason otherwise."""
        if not isinstance(name, str) or not name.strip():
            raise PathOutsideRoot(f"expected a file name (a non-empty string), got {name!r}")
        if "\x00" in name:
            raise PathOutsideRoot(f"the file name {name!r} contains a NUL character")
        if PurePath(name).is_absolute() or os.path.isabs(name):
            if self.allow_absolute:
                return Path(name)
            hint = (
                f" (set {self.absolute_option}: true to allow absolute ones)" if self.absolute_option else ""
            )
            raise PathOutsideRoot(
                f"the file name {name!r} is absolute; file names are relative to {self.root}{hint}"
            )
        normal = os.path.normpath(name)
        if normal == os.curdir or normal.split(os.sep)[0] == os.pardir:
            raise PathOutsideRoot(f"the file name {name!r} leaves {self.root}; fix the entry")
        path = self.root / normal
        real = self._real(path)
        if not is_inside(real, self.real_root) or real == self.real_root:
            raise PathOutsideRoot(
                f"the file name {name!r} leads through a link to {real}, outside {self.root}; "
                "copy the file in or fix the entry"
            )
        return path

    def _real(self, path: Path) -> str:
        folder = str(path.parent)
        if folder not in self._real_folders:
            self._real_folders[folder] = os.path.realpath(folder)
        real_folder = self._real_folders[folder]
        if os.path.islink(path):
            return os.path.realpath(path)
        return os.path.join(real_folder, path.name)


#: a positive image side at most this (int32)
MAX_IMAGE_SIDE = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def is_id(value: Any) -> bool:
    """An integer id (not a bool) within int64."""
    return isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX


def is_side(value: Any) -> bool:
    """An image width or height: a positive int (not a bool) up to MAX_IMAGE_SIDE."""
    return is_id(value) and 0 < value <= MAX_IMAGE_SIDE


def finite(value: Any) -> float | None:
    """`value` as a finite float when it is an int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def flag(value: Any) -> bool | None:
    """A 0/1 flag (`iscrowd`, `ignore`): 0, 1, false or true; None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return None


class GtObject(NamedTuple):
    """One ground-truth object: XYXY box, contiguous label, crowd/ignore flags, area (None: box area)."""

    box: Sequence[float]
    label: int
    iscrowd: bool = False
    ignore: bool = False
    area: float | None = None


def detection_target(boxes: np.ndarray, labels: np.ndarray, image_id: int, height: int, width: int) -> dict:
    """The detection target contract: XYXY BoundingBoxes (float32), int64 labels, image_id."""
    return {
        "boxes": tv_tensors.BoundingBoxes(
            torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)),
            format="XYXY",
            canvas_size=(height, width),
        ),
        "labels": torch.as_tensor(np.asarray(labels, dtype=np.int64).reshape(-1)),
        "image_id": int(image_id),
    }


def detection_sample(
    path: Path,
    objects: Sequence[GtObject],
    image_id: int,
    size: tuple[int, int],
    *,
    indexed_by: str,
    fix: str,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Decode the image at `path` with the target of `objects` (those a model trains on).

    The image must still have the (width, height) `size` that `indexed_by` gave when the dataset was
    indexed; otherwise a BadSampleError names both sizes and `fix`."""
    image = read_image(path)
    height, width = image.shape[-2:]
    if (width, height) != size:
        raise BadSampleError(
            str(path), f"the image is {width}x{height} but {indexed_by} says {size[0]}x{size[1]}; {fix}"
        )
    boxes = np.array([o.box for o in objects], dtype=np.float32).reshape(-1, 4)
    labels = np.array([o.label for o in objects], dtype=np.int64)
    return image, detection_target(boxes, labels, image_id, height, width)


def index_samples(
    entries: Iterable[Any], parse: Callable[[Any], tuple[dict[str, Any], list[GtObject]]], bad: BadSamples
) -> tuple[list[dict[str, Any]], list[list[GtObject]]]:
    """`parse` each entry into (item, objects); a BadSampleError goes to `bad` (raised or skipped)."""
    items: list[dict[str, Any]] = []
    objects: list[list[GtObject]] = []
    for entry in entries:
        try:
            item, found = parse(entry)
        except BadSampleError as error:
            bad.handle(error)
            continue
        items.append(item)
        objects.append(found)
    return items, objects


def coco_ground_truth(
    images: list[dict[str, Any]], objects: Sequence[Sequence[Any]], class_names: Sequence[str]
) -> dict[str, Any]:
    """COCO-format ground truth: `objects[i]` are the GtObject-like tuples of `images[i]`.

    category_id is the contiguous label; annotation ids start at 1.
    """
    annotations = []
    for image, image_objects in zip(images, objects, strict=True):
        for item in image_objects:
            obj = GtObject(*item)
            x1, y1, x2, y2 = (float(v) for v in obj.box)
            w, h = x2 - x1, y2 - y1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image["id"],
                    "category_id": int(obj.label),
                    "bbox": [x1, y1, w, h],
                    "area": float(obj.area) if obj.area is not None else w * h,
                    "iscrowd": int(bool(obj.iscrowd)),
                    "ignore": int(bool(obj.ignore)),
                }
            )
    categories = [{"id": label, "name": name} for label, name in enumerate(class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}
