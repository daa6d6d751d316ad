"""Ultralytics YOLO dataset: a data.yaml, or a folder with images/ + labels/; every label file read and
checked at construction, images decoded on access.

data.yaml: `path` (the dataset root, relative to the folder of data.yaml; default: that folder),
`train`/`val`/`test` (a folder of images, a .txt list of image paths, or a list of those, relative to
the root), `names` (a list, or a mapping {id: name} with ids 0..n-1), optional `nc`. A label file
is found by Ultralytics' rule: the last `images/` folder of the image's path (under the root)
becomes `labels/` and the suffix `.txt`. Each line is `class cx cy w h` (normalized to [0, 1]) or a
polygon `class x1 y1 x2 y2 ...` (its bounding box is used). Everything named, listed or linked must
stay under the root unless `allow_outside_root`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from toolkit.data.images import image_size
from toolkit.errors import BadSampleError, DataError
from toolkit.spec.files import load_yaml
from toolkit_plugins.datasets.common import (
    BadSamples,
    BoxQuirks,
    GtObject,
    PathOutsideRoot,
    RootedPaths,
    coco_ground_truth,
    detection_sample,
    finish_index,
    index_samples,
    is_inside,
    seeded_split,
)

IMAGE_SUFFIXES = frozenset({".bmp", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp"})
#: bounds on what is read: data.yaml and classes.txt, one label file, one list file, images in all
MAX_YAML_BYTES = 1 << 20
MAX_LABEL_BYTES = 16 << 20
MAX_LABEL_LINES = 100_000
MAX_LIST_BYTES = 256 << 20
MAX_IMAGES = 10_000_000
#: data.yaml files looked for in a root folder, and the class list of labelImg / Label Studio exports
YAML_NAMES = ("data.yaml", "data.yml")
CLASSES_TXT = "classes.txt"
#: split sub-folders of a plain root (images/<name> or <name>/images)
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
#: a normalized coordinate beyond these is malformed (pixel coordinates?), not a box quirk
COORDINATE_BOUNDS = (-1.0, 2.0)


class YoloDataset(torch.utils.data.Dataset):
    """Detection samples of one split of an Ultralytics YOLO dataset.

    image_id is the position in the sorted list of image paths. Boxes follow the box-quirk policy
    (`BoxQuirks`: zero-area dropped, crossing clipped, outside dropped; counted in `dropped_boxes`
    and `clipped_boxes`); a malformed line (non-numeric, class id out of range, a broken polygon)
    is a bad sample naming the file and line. `class_names` None: data.yaml's names (or
    classes.txt beside images/ and labels/).
    """

    task = "detection"

    def __init__(
        self,
        *,
        root: str | Path,
        split: str = "train",
        class_names: Sequence[str] | None = None,
        allow_outside_root: bool = False,
        val_fraction: float | None = None,
        seed: int = 0,
        on_bad_sample: str = "error",
    ) -> None:
        given = Path(root)
        if not given.exists():
            raise DataError(f"{given}: not found; 'root' names a data.yaml or a dataset folder")
        self.split = split
        self.allow_outside_root = allow_outside_root
        self.data_yaml = _find_yaml(given)
        if self.data_yaml is not None:
            data = _read_yaml(self.data_yaml)
            self.root = _dataset_root(self.data_yaml, data, allow_outside_root)
            source = str(self.data_yaml)
            file_names = _yaml_names(data, self.data_yaml)
            self._keypoints = "kpt_shape" in data
        else:
            self.root = given.absolute()
            source = str(self.root)
            file_names = _classes_txt(self.root)
            self._keypoints = False
        self._paths = _Places(self.root, allow_outside_root)
        bad = BadSamples(on_bad_sample, source)
        if self.data_yaml is not None:
            if val_fraction is not None:
                raise DataError(f"{source}: val_fraction applies to a folder without data.yaml or splits")
            images = self._yaml_images(data, split, bad)
        else:
            images = self._folder_images(split, val_fraction, seed, bad)
        self.class_names = _choose_names(class_names, file_names, source)
        self.category_ids = list(range(len(self.class_names)))
        quirks = BoxQuirks(source)
        self.items, self._objects = index_samples(
            enumerate(sorted(set(images), key=str)),
            lambda numbered: self._sample(*numbered, bad, quirks),
            bad,
        )
        if not self.items:
            raise DataError(f"{source}: no usable images in split {split!r}; check the paths and the images")
        self._ground_truth: dict[str, Any] | None = None
        finish_index(self, bad, quirks)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        item = self.items[index]
        return detection_sample(
            item["path"],
            self._objects[index],
            item["id"],
            (item["width"], item["height"]),
            indexed_by="the dataset's index (its header when the dataset was built)",
            fix="was the image replaced? build the dataset again",
        )

    def ground_truth(self) -> dict[str, Any]:
        """COCO-format ground truth (category_id: the class id; file_name: the path under the root)."""
        if self._ground_truth is None:
            images = [
                {"id": i["id"], "width": i["width"], "height": i["height"], "file_name": i["file_name"]}
                for i in self.items
            ]
            self._ground_truth = coco_ground_truth(images, self._objects, self.class_names)
        return self._ground_truth

    # -- which images ----------------------------------------------------------------------------
    def _yaml_images(self, data: dict[str, Any], split: str, bad: BadSamples) -> list[Path]:
        assert self.data_yaml is not None
        value = data.get(split)
        if value is None:
            available = [key for key in ("train", "val", "test") if data.get(key) is not None]
            raise DataError(
                f"{self.data_yaml}: no '{split}' key; it lists {', '.join(available) or 'no split'}; "
                "choose the dataset's split accordingly"
            )
        names = value if isinstance(value, list) else [value]
        if not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise DataError(
                f"{self.data_yaml}: '{split}' must be a folder, a .txt list of images or a list of those "
                f"(strings), got {value!r:.80}"
            )
        images: list[Path] = []
        for name in names:
            path = self._source(name, split)
            if path.is_dir():
                images += self._walk(path, bad)
            elif path.is_file():
                images += self._list(path, bad)
            else:
                raise DataError(f"{self.data_yaml}: '{split}': {name!r} ({path}) not found; fix the path")
        return images

    def _source(self, name: str, split: str) -> Path:
        """A data.yaml path under the root; Ultralytics' fallback for Roboflow's `../train/images`: the
        name without its leading `../` when that exists under the root."""
        assert self.data_yaml is not None
        stripped = name[3:] if name.startswith("../") else None
        try:
            path = self._paths.locate(name, self.root)
        except PathOutsideRoot as exc:
            if stripped is not None:
                try:
                    path = self._paths.locate(stripped, self.root)
                except PathOutsideRoot:
                    pass
                else:
                    if path.exists():
                        return path
            raise DataError(f"{self.data_yaml}: '{split}': {exc}") from None
        if not path.exists() and stripped is not None:
            try:
                fallback = self._paths.locate(stripped, self.root)
            except PathOutsideRoot:
                return path
            return fallback if fallback.exists() else path
        return path

    def _folder_images(
        self, split: str, val_fraction: float | None, seed: int, bad: BadSamples
    ) -> list[Path]:
        root = self.root
        split_dirs: dict[str, str] = {}  # relative folder -> the split it holds
        for key, names in SPLIT_FOLDERS.items():
            for name in names:
                for relative in (f"images/{name}", f"{name}/images"):
                    if (root / relative).is_dir():
                        split_dirs[relative] = key
        if split_dirs:
            if val_fraction is not None:
                raise DataError(f"{root}: val_fraction applies to a folder without split sub-folders")
            mine = [relative for relative, key in split_dirs.items() if key == split]
            if not mine:
                raise DataError(
                    f"{root}: no images/{split} (or {split}/images) folder; "
                    f"it has {', '.join(sorted(split_dirs))}"
                )
            return self._walk(self._folder(mine[0]), bad)
        folder = self._folder("images") if (root / "images").is_dir() else root
        images = self._walk(folder, bad)
        if val_fraction is not None:
            chosen = set(seeded_split([str(p) for p in images], val_fraction, seed, split, str(root)))
            return [p for p in images if str(p) in chosen]
        if split != "train":
            raise DataError(
                f"{root}: no split sub-folders (images/{split}); the whole folder is the train split: "
                "set val_fraction (and seed) to hold out a part of it, or point root at a data.yaml"
            )
        return images

    def _folder(self, relative: str) -> Path:
        try:
            return self._paths.locate(relative, self.root)
        except PathOutsideRoot as exc:
            raise DataError(f"{self.root}: {exc}") from None

    def _walk(self, folder: Path, bad: BadSamples) -> list[Path]:
        """The images below `folder` (hidden entries skipped); a link leading out of the root is a bad
        sample (unless allow_outside_root); each folder is walked once, by its real path."""
        found: list[Path] = []
        stack, walked = [folder], {os.path.realpath(folder)}
        while stack:
            current = stack.pop()
            try:
                entries = sorted(os.scandir(current), key=lambda e: e.name)
            except OSError as exc:
                raise DataError(f"{current}: cannot list the folder ({exc.strerror or exc})") from None
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                path = Path(entry.path)
                real = os.path.realpath(path) if entry.is_symlink() else None
                if real is not None and not self.allow_outside_root and not self._paths.holds(real):
                    bad.handle(
                        BadSampleError(
                            str(path),
                            f"a link to {real}, outside the dataset root {self.root}; copy the files in, "
                            "remove the link, or set allow_outside_root: true",
                        )
                    )
                    continue
                if entry.is_dir():
                    real = real or os.path.realpath(path)
                    if real not in walked:
                        walked.add(real)
                        stack.append(path)
                elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                    found.append(path)
                    if len(found) > MAX_IMAGES:
                        raise DataError(f"{folder}: more than {MAX_IMAGES} images; split the dataset")
        return found

    def _list(self, path: Path, bad: BadSamples) -> list[Path]:
        """The images a .txt list file names, one a line: absolute, or relative to the list's folder
        (else to the root); each must stay under the root. A bad line is a bad sample."""
        if path.stat().st_size > MAX_LIST_BYTES:
            raise DataError(f"{path}: larger than {MAX_LIST_BYTES} bytes; is it really a list of images?")
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: cannot read the list of images ({exc})") from None
        images = []
        for number, line in enumerate(lines, start=1):
            name = line.strip()
            if not name:
                continue
            try:
                image = self._paths.locate(name, path.parent)
                if not image.is_file() and not os.path.isabs(name):
                    beside_root = self._paths.locate(name, self.root)
                    image = beside_root if beside_root.is_file() else image
            except PathOutsideRoot as exc:
                bad.handle(BadSampleError(str(path), f"line {number}: {exc}"))
                continue
            if not image.is_file():
                bad.handle(BadSampleError(str(path), f"line {number}: image {name!r} not found ({image})"))
                continue
            images.append(image)
        if not lines:
            raise DataError(f"{path}: the list of images is empty")
        return images

    # -- one sample ------------------------------------------------------------------------------
    def _sample(
        self, image_id: int, path: Path, bad: BadSamples, quirks: BoxQuirks
    ) -> tuple[dict[str, Any], list[GtObject]]:
        width, height = image_size(path)
        label = self._paths.label_for(path)
        try:
            self._paths.check(label)
        except PathOutsideRoot as exc:
            raise BadSampleError(str(path), f"its label file: {exc}") from None
        objects = []
        if label.is_file():
            for number, values in _label_lines(label):
                try:
                    box, class_id = self._box(values, width, height)
                except ValueError as exc:
                    bad.handle(BadSampleError(str(label), str(exc), annotation=f"line {number}"))
                    continue
                shown = f"{label}: line {number} ({' '.join(values)[:60]})"
                fitted = quirks.fit(box, width, height, shown)
                if fitted is not None:
                    objects.append(GtObject(fitted, class_id))
        file_name = (
            path.relative_to(self.root).as_posix() if self._paths.lexically_inside(path) else str(path)
        )
        item = {"id": image_id, "path": path, "label": label, "file_name": file_name}
        item |= {"width": width, "height": height}
        return item, objects

    def _box(self, values: list[str], width: int, height: int) -> tuple[tuple[float, ...], int]:
        """(XYXY pixel box, class id) of one label line; ValueError naming the problem."""
        numbers = []
        for value in values:
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"{value[:20]!r} is not a number; fix the line") from None
            if not math.isfinite(number):
                raise ValueError(f"{value[:20]!r} is not a finite number; fix the line")
            numbers.append(number)
        if len(numbers) < 5:
            raise ValueError(
                f"{len(numbers)} numbers; a line is 'class cx cy w h' "
                "or a polygon 'class x1 y1 x2 y2 x3 y3 ...'"
            )
        class_id = numbers[0]
        if not class_id.is_integer() or not 0 <= class_id < len(self.class_names):
            raise ValueError(
                f"class id {values[0][:20]} is out of range for the {len(self.class_names)} names "
                f"({', '.join(self.class_names)}); fix the id or the names"
            )
        coordinates = numbers[1:]
        low, high = COORDINATE_BOUNDS
        if len(coordinates) == 4 or self._keypoints:
            cx, cy, w, h = coordinates[:4]
            corners = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            checked = (cx, cy, w, h)
        else:
            if len(coordinates) % 2 or len(coordinates) < 6:
                raise ValueError(
                    f"a polygon needs pairs of coordinates, at least 3 points; got {len(coordinates)} numbers"
                )
            xs, ys = coordinates[0::2], coordinates[1::2]
            corners = (min(xs), min(ys), max(xs), max(ys))
            checked = tuple(coordinates)
        if any(not low <= v <= high for v in checked):
            raise ValueError(
                "coordinates must be normalized to [0, 1] (fractions of the image side), got "
                f"{' '.join(values[1:5])[:60]}...; pixel coordinates? convert them"
            )
        x1, y1, x2, y2 = corners
        return (x1 * width, y1 * height, x2 * width, y2 * height), int(class_id)


class _Places:
    """Paths that data.yaml, list files, links and labels name, kept under the dataset root."""

    def __init__(self, root: Path, allow_outside: bool) -> None:
        self.root = root
        self.allow_outside = allow_outside
        self.rooted = RootedPaths(root)

    def holds(self, real: str) -> bool:
        """Whether the real path `real` lies under the real root."""
        return is_inside(real, self.rooted.real_root)

    def lexically_inside(self, path: Path) -> bool:
        try:
            path.relative_to(self.root)
        except ValueError:
            return False
        return True

    def locate(self, name: str, base: Path) -> Path:
        """`name` (absolute, or relative to `base`) as a path under the root; PathOutsideRoot when it
        leaves it (as written, or through a link) and allow_outside_root is not set."""
        if "\x00" in name:
            raise PathOutsideRoot(f"the path {name!r} contains a NUL character")
        path = Path(os.path.normpath(name if os.path.isabs(name) else base / name))
        if self.allow_outside:
            return path
        relative = os.path.relpath(path, self.root)
        if _leaves(relative) and os.path.isabs(name):  # an absolute name through the root's real path
            relative = os.path.relpath(path, self.rooted.real_root)
        if _leaves(relative):
            raise PathOutsideRoot(
                f"the path {name!r} leaves the dataset root {self.root}; move the data under it, or set "
                "allow_outside_root: true"
            )
        if relative == os.curdir:
            return self.root
        try:
            return self.rooted.resolve(relative)
        except PathOutsideRoot as exc:
            raise PathOutsideRoot(f"{exc}; or set allow_outside_root: true") from None

    def check(self, path: Path) -> None:
        """PathOutsideRoot when `path` (under the root as written) leads out through a link."""
        if not self.allow_outside and self.lexically_inside(path):
            self.locate(str(path.relative_to(self.root)), self.root)

    def label_for(self, image: Path) -> Path:
        """Ultralytics' rule, applied to the part of the path under the root: the last `images`
        folder becomes `labels`, the suffix `.txt` (no `images` folder: the .txt beside the image)."""
        inside = self.lexically_inside(image)
        text = "/" + image.relative_to(self.root).as_posix() if inside else image.as_posix()
        head, found, tail = text.rpartition("/images/")
        if found:
            text = f"{head}/labels/{tail}"
        text = os.path.splitext(text)[0] + ".txt"
        return self.root / text.lstrip("/") if inside else Path(text)


def _leaves(relative: str) -> bool:
    return relative == os.pardir or relative.startswith(os.pardir + os.sep)


# -- data.yaml and class names ---------------------------------------------------------------------
def _find_yaml(given: Path) -> Path | None:
    if given.is_file():
        return given
    return next((given / name for name in YAML_NAMES if (given / name).is_file()), None)


def _read_text(path: Path, limit: int, what: str) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise DataError(f"{path}: larger than {limit} bytes; is it really {what}?")
        return data.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read {what} ({exc})") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    """data.yaml through the project's bounded safe loader."""
    try:
        data = load_yaml(_read_text(path, MAX_YAML_BYTES, "an Ultralytics data.yaml"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = str(getattr(exc, "problem", None) or exc).replace("\n", " ")
        raise DataError(f"{path}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping (path, train, val, names), got {type(data).__name__}")
    return data


def _dataset_root(data_yaml: Path, data: dict[str, Any], allow_outside: bool) -> Path:
    """The folder of data.yaml, or its `path` relative to that folder (which it must stay under)."""
    folder = data_yaml.parent.absolute()
    value = data.get("path")
    if value is None or value == "":
        return folder
    if not isinstance(value, str):
        raise DataError(f"{data_yaml}: 'path' must be a folder (a string), got {value!r:.80}")
    try:
        root = _Places(folder, allow_outside).locate(value, folder)
    except PathOutsideRoot as exc:
        raise DataError(
            f"{data_yaml}: 'path': {exc} (the folder of data.yaml); if the data lies beside data.yaml, "
            "remove 'path' or make it relative (e.g. '.')"
        ) from None
    if not root.is_dir():
        raise DataError(f"{data_yaml}: 'path' {value!r} ({root}) is not a folder; fix or remove it")
    return root


def _yaml_names(data: dict[str, Any], data_yaml: Path) -> list[str] | None:
    """data.yaml's `names` as a list (a mapping must have the ids 0..n-1); None when absent."""
    names = data.get("names")
    if names is None:
        return None
    if isinstance(names, dict):
        ids = sorted(names, key=lambda k: (not isinstance(k, int), str(k)))
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in ids) or ids != list(
            range(len(ids))
        ):
            raise DataError(
                f"{data_yaml}: 'names' as a mapping needs the ids 0..{len(ids) - 1}, "
                f"got {ids!r:.80}; fix the ids"
            )
        names = [names[k] for k in ids]
    if not isinstance(names, list) or not names:
        raise DataError(f"{data_yaml}: 'names' must be a list or a mapping {{id: name}}, got {names!r:.80}")
    if not all(isinstance(n, (str, int)) and not isinstance(n, bool) and str(n).strip() for n in names):
        raise DataError(f"{data_yaml}: every name in 'names' must be a non-empty string, got {names!r:.80}")
    names = [str(n).strip() for n in names]
    count = data.get("nc")
    if count is not None and count != len(names):
        raise DataError(f"{data_yaml}: 'nc' is {count!r} but 'names' lists {len(names)} names; fix one")
    if len(set(names)) != len(names):
        raise DataError(f"{data_yaml}: 'names' lists a name twice: {names!r:.120}")
    return names


def _classes_txt(root: Path) -> list[str] | None:
    """classes.txt (one name a line) of a plain root, as labelImg and Label Studio write it."""
    path = root / CLASSES_TXT
    if not path.is_file():
        return None
    names = [line.strip() for line in _read_text(path, MAX_YAML_BYTES, "a class list").splitlines()]
    return [name for name in names if name] or None


def _choose_names(given: Sequence[str] | None, in_file: list[str] | None, source: str) -> list[str]:
    if given is not None:
        if in_file is not None and list(given) != in_file:
            raise DataError(
                f"{source}: its names {in_file} differ from class_names {list(given)} (model.class_names "
                "when the dataset does not set them); make them the same names in the same order"
            )
        return list(given)
    if in_file is None:
        raise DataError(
            f"{source}: no class names (no 'names' in data.yaml, no classes.txt); set class_names "
            "(or model.class_names)"
        )
    return in_file


def _label_lines(label: Path) -> list[tuple[int, list[str]]]:
    """(line number, words) of each non-empty line; BadSampleError for a huge or unreadable file."""
    if label.stat().st_size > MAX_LABEL_BYTES:
        raise BadSampleError(str(label), f"larger than {MAX_LABEL_BYTES} bytes; is it really a label file?")
    try:
        lines = label.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadSampleError(str(label), f"cannot read the label file ({exc})") from None
    if len(lines) > MAX_LABEL_LINES:
        raise BadSampleError(str(label), f"more than {MAX_LABEL_LINES} lines; is it really a label file?")
    return [(number, line.split()) for number, line in enumerate(lines, start=1) if line.strip()]
