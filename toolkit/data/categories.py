"""Category ids: the dataset's own id of each label (COCO's 1, 3, 7, ...), carried by checkpoints and
ONNX files so that results files score against the dataset's annotation file as they are, and the
image and category ids of a COCO annotation file that `predict --coco-gt` writes results for.
Torch-free."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolkit.contracts import HasCategoryIds
from toolkit.errors import ToolkitError

#: the largest annotation file `--coco-gt` reads (bytes): COCO's train2017 file is about 450 MB
MAX_COCO_GT_BYTES = 2 * 1024**3


def checked_category_ids(value: Any, class_count: int, source: str) -> list[int] | None:
    """`value` as one int id per class (None when absent); a ToolkitError naming `source` when it is
    not a list of `class_count` distinct integers."""
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != class_count
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in value)
        or len(set(value)) != len(value)
    ):
        shown = repr(value)[:120]
        raise ToolkitError(
            f"{source}: category ids {shown} are not {class_count} distinct integers (one per class "
            "name); the file is damaged or was not written by toolkit"
        )
    return [int(i) for i in value]


def dataset_category_ids(dataset: Any) -> list[int] | None:
    """A dataset's `category_ids` (its original id per label) as ints, or None when it has none."""
    ids = dataset.category_ids if isinstance(dataset, HasCategoryIds) else None
    if ids is None:
        return None
    return checked_category_ids(
        [int(i) for i in ids], len(dataset.class_names), f"dataset {type(dataset).__name__}"
    )


class CocoIds:
    """Image and category ids of a COCO annotation file, matched to input paths and class names."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        document = _read_json(self.path)
        images = document.get("images") if isinstance(document, dict) else None
        categories = document.get("categories") if isinstance(document, dict) else None
        if not isinstance(images, list) or not isinstance(categories, list):
            raise ToolkitError(
                f"--coco-gt {self.path}: not a COCO annotation file (it needs 'images' and 'categories' "
                "lists); name the instances JSON of the dataset the images come from"
            )
        self._by_name: dict[str, int] = {}
        for image in images:
            if (
                isinstance(image, dict)
                and isinstance(image.get("file_name"), str)
                and _is_id(image.get("id"))
            ):
                self._by_name[Path(image["file_name"]).as_posix()] = image["id"]
        self._categories = {
            c["name"]: c["id"]
            for c in categories
            if isinstance(c, dict) and isinstance(c.get("name"), str) and _is_id(c.get("id"))
        }

    def image_ids(self, paths: Sequence[Path]) -> list[int]:
        """The id of each input path: the annotation entry whose `file_name` is the path's longest
        matching tail (`train/a.jpg`, then `a.jpg`). Every path must be found."""
        ids, missing = [], []
        for path in paths:
            parts = path.resolve().parts if path.is_absolute() else Path(path).parts
            found = next(
                (
                    self._by_name[tail]
                    for k in range(len(parts))
                    if (tail := "/".join(parts[k:])) in self._by_name
                ),
                None,
            )
            if found is None:
                missing.append(str(path))
            ids.append(found)
        if missing:
            raise ToolkitError(
                f"--coco-gt {self.path}: {len(missing)} of the {len(paths)} images are not in its 'images' "
                f"list (e.g. {missing[0]}); predict only that dataset's images, or leave out --coco-gt"
            )
        return ids  # type: ignore[return-value]

    def category_ids(self, class_names: Sequence[str]) -> list[int]:
        """The file's category id of each class name (matched by name)."""
        unknown = [name for name in class_names if name not in self._categories]
        if unknown:
            raise ToolkitError(
                f"--coco-gt {self.path}: the model's classes {unknown[:5]} are not among the file's "
                f"categories {sorted(self._categories)[:10]}; the model was trained on other data"
            )
        return [int(self._categories[name]) for name in class_names]


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise ToolkitError(f"--coco-gt {path}: file not found; name the dataset's COCO annotation file")
    if path.stat().st_size > MAX_COCO_GT_BYTES:
        raise ToolkitError(f"--coco-gt {path}: larger than {MAX_COCO_GT_BYTES} bytes; not read")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ToolkitError(f"--coco-gt {path}: not readable JSON ({exc})") from None
