"""Synthetic shapes dataset (the embedded default: needs no files), registered without importing torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, Field

import toolkit
from toolkit.errors import ToolkitError, closest

if TYPE_CHECKING:
    from toolkit_plugins.datasets.shapes_dataset import ShapesDataset

#: Shapes the generator can draw; `class_names` and `target` pick from these.
CATALOGUE: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "diamond",
    "ellipse",
    "cross",
    "hexagon",
    "ring",
)


def check_shape(name: str) -> str:
    if name not in CATALOGUE:
        hint = closest(name, CATALOGUE, n=1)
        did_you_mean = f" (did you mean {hint[0]}?)" if hint else ""
        raise ValueError(f"unknown shape {name!r}{did_you_mean}; the catalogue is: {', '.join(CATALOGUE)}")
    return name


def listed_once(names: list[str], what: str) -> list[str]:
    """`names` when none repeats; else a ValueError naming the repeated `what` (e.g. "shapes")."""
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{what} listed twice: {', '.join(duplicates)}")
    return names


def _check_shapes(names: list[str]) -> list[str]:
    if not names:
        raise ValueError(f"name at least one shape from the catalogue: {', '.join(CATALOGUE)}")
    for name in names:
        check_shape(name)
    return listed_once(names, "shapes")


ShapeNames = Annotated[
    list[str],
    AfterValidator(_check_shapes),
    Field(description=f"shape classes, from: {', '.join(CATALOGUE)}"),
]
Target = Annotated[
    str | None,
    AfterValidator(lambda v: v if v is None else check_shape(v)),
    Field(
        description="classification: the shape whose presence is the positive class (default: first class)"
    ),
]
ObjectCount = Annotated[int, Field(ge=1, le=500, description="objects drawn per detection image")]
Pixels = Annotated[float, Field(ge=6, le=2048)]


def _min_max(pair: tuple[float, float] | None) -> tuple[float, float] | None:
    if pair is not None and pair[0] > pair[1]:
        raise ValueError(f"object_size {list(pair)} must be [min, max] with min <= max")
    return pair


def shapes(
    task: Annotated[
        Literal["detection", "classification"], Field(description="boxes of every shape, or target present?")
    ] = "detection",
    length: Annotated[int, Field(ge=1, description="number of images")] = 1000,
    image_size: Annotated[int, Field(ge=32, le=2048, description="side of the square images")] = 128,
    class_names: ShapeNames = ["circle", "square", "triangle"],  # noqa: B006 (pydantic copies it)
    seed: Annotated[int, Field(ge=0, description="image i depends only on (seed, i)")] = 0,
    min_objects: ObjectCount = 1,
    max_objects: ObjectCount = 10,
    target: Target = None,
    object_size: Annotated[
        tuple[Pixels, Pixels] | None,
        AfterValidator(_min_max),
        Field(
            description="(min, max) object diameter in pixels, drawn log-uniformly (e.g. [12, 40]: small "
            "objects in a large image); default: 1/16 to 1/2 of image_size"
        ),
    ] = None,
) -> ShapesDataset:
    """Synthetic shapes on textured, noisy backgrounds (detection or presence classification)."""
    from toolkit_plugins.datasets.shapes_dataset import ShapesDataset

    if min_objects > max_objects:
        raise ToolkitError(
            f"shapes dataset: min_objects ({min_objects}) is larger than max_objects ({max_objects}); "
            "lower min_objects or raise max_objects"
        )
    if object_size is not None and object_size[1] > image_size:
        raise ToolkitError(
            f"shapes dataset: object_size {list(object_size)} has objects larger than the images "
            f"(image_size {image_size}); lower object_size or raise image_size"
        )
    return ShapesDataset(
        task=task,
        length=length,
        image_size=image_size,
        class_names=list(class_names),
        seed=seed,
        min_objects=min_objects,
        max_objects=max_objects,
        target=target,
        object_size=object_size,
    )


@toolkit.hookimpl
def toolkit_register_datasets(registry: toolkit.Registry) -> None:
    registry.register("shapes", shapes)
