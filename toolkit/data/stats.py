"""`toolkit data stats`: images and objects per class, box size distribution (table + PNG)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.contracts import CountsBoxQuirks, HasLabels
from toolkit.table import format_table

SIZE_BINS = (0, 16, 32, 64, 96, 128, 256, 512, float("inf"))


@dataclass
class DatasetStats:
    """Counts per class and box sizes (sqrt of box area, pixels) of one dataset split."""

    task: str  # the dataset's task (its target format), as reported
    boxes: bool  # box targets (objects per class, sizes) or one label per image
    class_names: list[str]
    images: int
    images_per_class: list[int]
    objects_per_class: list[int] = field(default_factory=list)
    ignored_objects: int = 0
    empty_images: int = 0
    box_sizes: list[np.ndarray] = field(default_factory=list)  # per class
    # boxes the dataset dropped (zero-area, inverted, outside) and clipped to the image; None: not counted
    dropped_boxes: int | None = None
    clipped_boxes: int | None = None

    def table(self) -> str:
        if not self.boxes:
            rows = [[name, n] for name, n in zip(self.class_names, self.images_per_class, strict=True)]
            rows.append(["total", self.images])
            return format_table(["class", "images"], rows)
        rows = []
        for name, n_img, n_obj, sizes in zip(
            self.class_names, self.images_per_class, self.objects_per_class, self.box_sizes, strict=True
        ):
            quantiles = np.percentile(sizes, [5, 50, 95]).round(1).tolist() if len(sizes) else ["-"] * 3
            rows.append([name, n_img, n_obj, *quantiles])
        rows.append(["total", self.images, sum(self.objects_per_class), "", "", ""])
        text = format_table(["class", "images", "objects", "size p5", "size p50", "size p95"], rows)
        notes = (
            f"\n{self.empty_images} images without objects, {self.ignored_objects} crowd/difficult objects"
        )
        if self.dropped_boxes is not None or self.clipped_boxes is not None:
            notes += (
                f"\nboxes dropped (zero-area, inverted or outside the image): {self.dropped_boxes or 0}, "
                f"clipped to the image: {self.clipped_boxes or 0}"
            )
        return text + notes + "\nsize: sqrt(box area) in pixels of the original image"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "task": self.task,
            "images": self.images,
            "classes": {
                name: {"images": self.images_per_class[i]} for i, name in enumerate(self.class_names)
            },
        }
        if self.boxes:
            for i, name in enumerate(self.class_names):
                counts, _ = np.histogram(self.box_sizes[i], bins=SIZE_BINS)
                data["classes"][name]["objects"] = self.objects_per_class[i]
                data["classes"][name]["size_histogram"] = counts.tolist()
            data["size_bins"] = [str(b) for b in SIZE_BINS]
            data["empty_images"] = self.empty_images
            data["ignored_objects"] = self.ignored_objects
            if self.dropped_boxes is not None:
                data["dropped_boxes"] = self.dropped_boxes
            if self.clipped_boxes is not None:
                data["clipped_boxes"] = self.clipped_boxes
        return data


def label_stats(dataset: Any) -> DatasetStats:
    """Images per class of a dataset with one label per image (its `labels` when it has them, else
    read sample by sample)."""
    names = list(dataset.class_names)
    per_class = [0] * len(names)
    labels = dataset.labels if isinstance(dataset, HasLabels) else None
    for index in range(len(dataset)):
        label = labels[index] if labels is not None else dataset[index][1]
        per_class[int(label)] += 1
    return DatasetStats(str(dataset.task), False, names, len(dataset), per_class)


def box_stats(dataset: Any) -> DatasetStats:
    """Images, objects and box sizes per class from a dataset's ground truth (`ground_truth()`, COCO
    format; no image decoding), and the boxes it dropped and clipped."""
    names = list(dataset.class_names)
    truth = dataset.ground_truth()
    objects = [0] * len(names)
    sizes: list[list[float]] = [[] for _ in names]
    images_with: list[set[int]] = [set() for _ in names]
    ignored = 0
    for annotation in truth["annotations"]:
        if annotation.get("iscrowd") or annotation.get("ignore"):
            ignored += 1
            continue
        label = int(annotation["category_id"])
        objects[label] += 1
        _, _, width, height = annotation["bbox"]
        sizes[label].append(float(np.sqrt(max(width, 0) * max(height, 0))))
        images_with[label].add(annotation["image_id"])
    with_objects = set().union(*images_with) if images_with else set()
    return DatasetStats(
        str(dataset.task),
        True,
        names,
        len(truth["images"]),
        [len(s) for s in images_with],
        objects,
        ignored,
        len(truth["images"]) - len(with_objects),
        [np.asarray(s) for s in sizes],
        *_box_quirks(dataset),
    )


def _box_quirks(dataset: Any) -> tuple[int | None, int | None]:
    """The boxes a dataset dropped and clipped; None when it counts none (`CountsBoxQuirks`)."""
    if not isinstance(dataset, CountsBoxQuirks):
        return None, None
    return int(dataset.dropped_boxes), int(dataset.clipped_boxes)


def plot_stats(stats: DatasetStats, path: str | Path) -> Path:
    """Bar chart of counts per class and (detection) a histogram of box sizes per class, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    detection = stats.boxes
    figure, axes = plt.subplots(1, 2 if detection else 1, figsize=(11 if detection else 6, 4), squeeze=False)
    counts = stats.objects_per_class if detection else stats.images_per_class
    axes[0][0].bar(stats.class_names, counts, color="#4363d8")
    axes[0][0].set_title("objects per class" if detection else "images per class")
    axes[0][0].tick_params(axis="x", rotation=45)
    if detection:
        finite = [s for s in stats.box_sizes if len(s)]
        top = max((float(s.max()) for s in finite), default=1.0)
        bins = np.linspace(0, top, 30)
        for name, sizes in zip(stats.class_names, stats.box_sizes, strict=True):
            if len(sizes):
                axes[0][1].hist(sizes, bins=bins, alpha=0.5, label=name)
        axes[0][1].set_title("box size: sqrt(area), pixels")
        axes[0][1].set_xlabel("pixels")
        axes[0][1].legend()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
