"""Pascal VOC detection dataset (standard or loose layout), registered lightly."""

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
        str,
        Field(
            min_length=1,
            description="folder holding Annotations/, JPEGImages/ and ImageSets/Main/, or a folder of XML "
            "files beside their images (or with Annotations/ or annotations/ beside images/)",
        ),
    ],
    split: Annotated[
        str,
        Field(
            min_length=1,
            description="ImageSets/Main/<split>.txt lists the images; with val_fraction: train or val",
        ),
    ] = "train",
    class_names: Annotated[
        list[str] | None,
        Field(
            min_length=1,
            description="object names, in label order (default: model.class_names; alone: the names "
            "found in the XML files, sorted)",
        ),
    ] = None,
    use_difficult: Annotated[bool, Field(description="train on objects marked difficult")] = False,
    split_file: Annotated[
        str | None,
        Field(
            min_length=1,
            description="no ImageSets: a list file (relative to root) of the split's XML ids or file names",
        ),
    ] = None,
    split_glob: Annotated[
        str | None,
        Field(min_length=1, description="no ImageSets: the split's XML files, e.g. 'train_*.xml'"),
    ] = None,
    val_fraction: Annotated[
        float | None,
        Field(gt=0, lt=1, description="no ImageSets: this fraction of the XML files (seeded) is val"),
    ] = None,
    seed: Annotated[int, Field(description="the seed of val_fraction's split")] = 0,
    on_bad_sample: str = "error",
) -> VocDataset:
    """Pascal VOC XML annotations; difficult objects: ignored in evaluation, in training by default.

    Without ImageSets/Main (or with split_file, split_glob or val_fraction) the XML files lie beside
    their images or in Annotations/ beside an image folder; give at most one split option.
    """
    from toolkit_plugins.datasets.voc_dataset import VocDataset

    return VocDataset(
        root=root,
        split=split,
        class_names=None if class_names is None else list(class_names),
        use_difficult=use_difficult,
        split_file=split_file,
        split_glob=split_glob,
        val_fraction=val_fraction,
        seed=seed,
        on_bad_sample=on_bad_sample,
    )


@toolkit.hookimpl
def toolkit_register_datasets(registry: toolkit.Registry) -> None:
    registry.register("voc", voc)
