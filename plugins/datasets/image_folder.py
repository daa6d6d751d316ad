"""Image-folder classification dataset (one sub-folder per class), registered without importing torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

import toolkit

if TYPE_CHECKING:
    from toolkit_plugins.datasets.image_folder_dataset import ImageFolderDataset


def image_folder(
    root: Annotated[str, Field(min_length=1, description="folder with one sub-folder of images per class")],
    class_names: Annotated[
        list[str] | None,
        Field(min_length=1, description="sub-folders to use, in label order (default: all, sorted)"),
    ] = None,
    on_bad_sample: str = "error",
) -> ImageFolderDataset:
    """Classification from ROOT/CLASS/**/IMAGE (jpg, jpeg, png, bmp, webp; any case)."""
    from toolkit_plugins.datasets.image_folder_dataset import ImageFolderDataset

    return ImageFolderDataset(root=root, class_names=class_names, on_bad_sample=on_bad_sample)


@toolkit.hookimpl
def toolkit_register_datasets(registry: toolkit.Registry) -> None:
    registry.register("image_folder", image_folder)
