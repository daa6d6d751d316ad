"""COCO detection dataset (instances JSON + image folder), registered without importing torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

import toolkit

if TYPE_CHECKING:
    from toolkit_plugins.datasets.coco_dataset import CocoDataset


def coco(
    images: Annotated[
        str, Field(min_length=1, description="folder holding the images (file_name is relative to it)")
    ],
    annotations: Annotated[str, Field(min_length=1, description="COCO instances JSON file")],
    skip_empty: Annotated[bool, Field(description="drop images without (non-crowd) objects")] = False,
    class_names: Annotated[
        list[str] | None,
        Field(description="categories to use, by name, in label order (others ignored); default: all, by id"),
    ] = None,
    allow_absolute_paths: Annotated[
        bool,
        Field(
            description="accept absolute file_name values (images kept apart from the annotations); "
            "relative ones must stay under images either way"
        ),
    ] = False,
    on_bad_sample: str = "error",
) -> CocoDataset:
    """COCO instances: category ids map to contiguous labels in id order; crowd boxes only in ground truth.

    Every file_name must stay under `images` (no `..`, no link leading out; absolute names only with
    allow_absolute_paths).
    """
    from toolkit_plugins.datasets.coco_dataset import CocoDataset

    return CocoDataset(
        images=images,
        annotations=annotations,
        skip_empty=skip_empty,
        class_names=class_names,
        on_bad_sample=on_bad_sample,
        allow_absolute_paths=allow_absolute_paths,
    )


@toolkit.hookimpl
def toolkit_register_datasets(registry: toolkit.Registry) -> None:
    registry.register("coco", coco)
