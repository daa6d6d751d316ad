"""Ultralytics YOLO detection dataset (data.yaml, or images/ + labels/), registered without torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

import toolkit

if TYPE_CHECKING:
    from toolkit_plugins.datasets.yolo_dataset import YoloDataset


def yolo(
    root: Annotated[
        str,
        Field(
            min_length=1,
            description="an Ultralytics data.yaml, or a folder holding one, or a folder with images/ and "
            "labels/ (optionally with split sub-folders: images/train, images/val)",
        ),
    ],
    split: Annotated[
        Literal["train", "val", "test"], Field(description="the data.yaml key, or the sub-folder, to read")
    ] = "train",
    class_names: Annotated[
        list[str] | None,
        Field(
            min_length=1,
            description="class names in label order (default: model.class_names; alone: data.yaml's "
            "names or classes.txt); must equal data.yaml's names when both are given",
        ),
    ] = None,
    allow_outside_root: Annotated[
        bool,
        Field(
            description="accept paths in data.yaml, list files and links that lead outside the dataset "
            "root (the folder of data.yaml, or its 'path')"
        ),
    ] = False,
    val_fraction: Annotated[
        float | None,
        Field(
            gt=0,
            lt=1,
            description="a folder without split sub-folders: this fraction of its images (seeded) is val",
        ),
    ] = None,
    seed: Annotated[int, Field(description="the seed of val_fraction's split")] = 0,
    on_bad_sample: str = "error",
) -> YoloDataset:
    """Ultralytics YOLO txt labels (`class cx cy w h`, normalized; polygons become their bounding box).

    Labels are found by Ultralytics' rule (the last images/ of the path becomes labels/, the suffix
    .txt); an image without a label file, or with an empty one, has no objects. Every path stays
    under the dataset root unless allow_outside_root.
    """
    from toolkit_plugins.datasets.yolo_dataset import YoloDataset

    return YoloDataset(
        root=root,
        split=split,
        class_names=None if class_names is None else list(class_names),
        allow_outside_root=allow_outside_root,
        val_fraction=val_fraction,
        seed=seed,
        on_bad_sample=on_bad_sample,
    )


@toolkit.hookimpl
def toolkit_register_datasets(registry: toolkit.Registry) -> None:
    registry.register("yolo", yolo)
