"""Pascal VOC detection dataset (Annotations/, JPEGImages/, ImageSets/Main/), registered lightly."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

import toolkit

if TYPE_CHECKING:
    from toolkit_plugins.datasets.voc_dataset import VocDataset

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


def voc(
    root: Annotated[
        str, Field(min_length=1, description="folder holding Annotations/, JPEGImages/ and ImageSets/Main/")
    ],
    split: Annotated[
        str, Field(min_length=1, description="ImageSets/Main/<split>.txt lists the images")
    ] = "train",
    class_names: Annotated[
        list[str],
        Field(min_length=1, description="object names, in label order (default: the 20 VOC classes)"),
    ] = list(VOC_CLASSES),  # noqa: B006 (pydantic copies defaults)
    use_difficult: Annotated[bool, Field(description="train on objects marked difficult")] = False,
    on_bad_sample: str = "error",
) -> VocDataset:
    """Pascal VOC XML annotations; difficult objects: ignored in evaluation, in training by default."""
    from toolkit_plugins.datasets.voc_dataset import VocDataset

    return VocDataset(
        root=root,
        split=split,
        class_names=list(class_names),
        use_difficult=use_difficult,
        on_bad_sample=on_bad_sample,
    )


@toolkit.hookimpl
def toolkit_register_datasets(registry: toolkit.Registry) -> None:
    registry.register("voc", voc)
