"""Patterned-object datasets (the fine-tuning demo's world), registered without importing torch.

`presence`: is the target (a shape and a texture in yellow and black, like a hornet) in the scene?
`pattern_objects`: one object per image, classified by shape and texture, and optionally by whether
it wears the target colours (the pretraining task); or scenes of them with boxes.
`photo_objects`: the natural-photo stand-in for detection: one or two large objects of one class
among distractors on photo-like backgrounds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal, get_args

from pydantic import AfterValidator, Field

import toolkit
from toolkit.errors import ToolkitError
from toolkit_plugins.augmentations import ordered_pair
from toolkit_plugins.datasets.shapes import CATALOGUE, ShapeNames, check_shape, listed_once

if TYPE_CHECKING:
    from toolkit_plugins.datasets.patterns_dataset import PatternObjectsDataset, PresenceDataset
    from toolkit_plugins.datasets.photo_objects_dataset import PhotoObjectsDataset

Texture = Literal["stripes", "checker", "spots", "solid"]
ALL_TEXTURES: list[str] = list(get_args(Texture))


def _distinct_textures(names: list[str]) -> list[str]:
    if not names:
        raise ValueError(f"name at least one texture: {', '.join(ALL_TEXTURES)}")
    return listed_once(names, "textures")


DEFAULT_SHAPES = ["circle", "square", "triangle", "star", "diamond", "ellipse", "cross", "hexagon"]
Side = Annotated[int, Field(ge=32, le=1024, description="side of the square images")]
Seed = Annotated[int, Field(ge=0, description="image i depends only on (seed, i)")]
ObjectSize = Annotated[
    tuple[Annotated[float, Field(gt=0.05, le=0.9)], Annotated[float, Field(gt=0.05, le=0.9)]],
    AfterValidator(ordered_pair),
    Field(description="(min, max) object diameter as a fraction of the image side"),
]


def presence(
    positives: Annotated[int, Field(ge=0, le=10_000_000, description="images with the target")] = 1042,
    negatives: Annotated[int, Field(ge=0, le=10_000_000, description="images without it")] = 1844,
    image_size: Side = 64,
    seed: Seed = 0,
    target_shape: Annotated[
        str, AfterValidator(check_shape), Field(description="the target's shape")
    ] = "ellipse",
    target_texture: Annotated[Texture, Field(description="the target's texture")] = "stripes",
    shapes: ShapeNames = DEFAULT_SHAPES,
    distractors: Annotated[
        tuple[Annotated[int, Field(ge=0, le=20)], Annotated[int, Field(ge=0, le=20)]],
        AfterValidator(ordered_pair),
        Field(description="(min, max) distractor objects per image"),
    ] = (1, 4),
    object_size: ObjectSize = (0.3, 0.5),
) -> PresenceDataset:
    """Presence/absence of a striped yellow-and-black target among decoys, distractors and clutter."""
    from toolkit_plugins.datasets.patterns_dataset import PresenceDataset

    if positives + negatives == 0:
        raise ToolkitError("presence dataset: positives and negatives are both 0; ask for some images")
    if target_shape not in shapes or len(shapes) < 2:
        raise ToolkitError(
            f"presence dataset: shapes must hold the target shape {target_shape!r} and at least one other "
            f"(got {shapes}); the catalogue is: {', '.join(CATALOGUE)}"
        )
    return PresenceDataset(
        positives=positives,
        negatives=negatives,
        image_size=image_size,
        seed=seed,
        target_shape=target_shape,
        target_texture=target_texture,
        shapes=shapes,
        distractors=distractors,
        object_size=object_size,
    )


def pattern_objects(
    task: Annotated[
        Literal["detection", "classification"],
        Field(description="scenes with boxes, or one object per image"),
    ] = "detection",
    length: Annotated[int, Field(ge=1, le=10_000_000, description="number of images")] = 6000,
    image_size: Side = 64,
    seed: Seed = 0,
    shapes: ShapeNames = DEFAULT_SHAPES,
    textures: Annotated[
        list[Texture],
        AfterValidator(_distinct_textures),
        Field(description="texture classes (default all four)"),
    ] = ALL_TEXTURES,
    objects: Annotated[
        tuple[Annotated[int, Field(ge=1, le=20)], Annotated[int, Field(ge=1, le=20)]],
        AfterValidator(ordered_pair),
        Field(description="detection: (min, max) objects per image"),
    ] = (1, 5),
    object_size: ObjectSize = (0.22, 0.42),
    palette: Annotated[
        bool,
        Field(description="classes tell the target colours apart: 'shape/texture/yellow-black', '.../other'"),
    ] = False,
) -> PatternObjectsDataset:
    """Patterned objects among clutter; classes are every (shape, texture[, palette]) ('shape/texture')."""
    from toolkit_plugins.datasets.patterns_dataset import PatternObjectsDataset

    return PatternObjectsDataset(
        task=task,
        length=length,
        image_size=image_size,
        seed=seed,
        shapes=shapes,
        textures=textures,
        objects=objects,
        object_size=object_size,
        palette=palette,
    )


Range = tuple[Annotated[int, Field(ge=0, le=20)], Annotated[int, Field(ge=0, le=20)]]


def photo_objects(
    length: Annotated[int, Field(ge=1, le=10_000_000, description="number of images")] = 200,
    image_size: Side = 256,
    seed: Seed = 0,
    class_name: Annotated[str, Field(min_length=1, description="the one class's name")] = "object",
    target_shape: Annotated[
        str, AfterValidator(check_shape), Field(description="the class's shape")
    ] = "ellipse",
    target_texture: Annotated[Texture, Field(description="the class's texture")] = "spots",
    shapes: ShapeNames = DEFAULT_SHAPES,
    objects: Annotated[
        Range, AfterValidator(ordered_pair), Field(description="(min, max) objects of the class per image")
    ] = (1, 2),
    object_size: ObjectSize = (0.35, 0.8),
    distractors: Annotated[
        Range, AfterValidator(ordered_pair), Field(description="(min, max) unlabelled distractors per image")
    ] = (0, 3),
    distractor_size: ObjectSize = (0.1, 0.35),
) -> PhotoObjectsDataset:
    """Natural-photo stand-in: 1-2 large objects of one class among distractors on photo-like backgrounds."""
    from toolkit_plugins.datasets.photo_objects_dataset import PhotoObjectsDataset

    if objects[0] < 1:
        raise ToolkitError(f"photo_objects dataset: objects {list(objects)} must start at 1 or more")
    return PhotoObjectsDataset(
        length=length,
        image_size=image_size,
        seed=seed,
        class_name=class_name,
        target_shape=target_shape,
        target_texture=target_texture,
        shapes=shapes,
        objects=objects,
        object_size=object_size,
        distractors=distractors,
        distractor_size=distractor_size,
    )


@toolkit.hookimpl
def toolkit_register_datasets(registry: toolkit.Registry) -> None:
    registry.register("presence", presence)
    registry.register("pattern_objects", pattern_objects)
    registry.register("photo_objects", photo_objects)
