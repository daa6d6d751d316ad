"""Built-in augmentations: box-aware `torchvision.transforms.v2` transforms (docs/augmentations.md).

`geometric` (hflip, affine, random_resized_crop, iou_crop, zoom_out, scale_jitter, resize) and
`photometric` (color_jitter, erasing, gaussian_noise) register factories without importing torch;
`resize` is the core's `toolkit.data.letterbox.Letterbox`, the model's own preprocessing.

Every factory returns a v2 transform called as `transform(image, target)` with the attribute the
pipeline builder reads: `needs_float` (the builder converts uint8 to float32 in [0, 1] right before
the first such transform). Normalization is not an augmentation: the model applies it
(`model.normalize`). This module holds the parameter types both registration modules share; it
imports pydantic only.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import Field

T = TypeVar("T")


def ordered_pair(value: tuple[float, float]) -> tuple[float, float]:
    """Check that a (min, max) range has min <= max."""
    if value[0] > value[1]:
        raise ValueError(f"expected a (min, max) range with min <= max, got {tuple(value)}")
    return value


def tag(transform: T, *, needs_float: bool = False) -> T:
    """Set the `needs_float` attribute the pipeline builder reads."""
    transform.needs_float = needs_float  # type: ignore[attr-defined]
    return transform


def apply_with_probability(transform: Any, p: float) -> Any:
    """`transform` itself when p == 1, else wrapped in `v2.RandomApply` with probability p."""
    if p >= 1.0:
        return transform
    from torchvision.transforms import v2

    return v2.RandomApply([transform], p=p)


Probability = Annotated[
    float, Field(ge=0.0, le=1.0, description="probability of applying the augmentation to a sample")
]
PixelValue = Annotated[
    float,
    Field(
        ge=0.0,
        le=255.0,
        description="pixel value in the image's own units (0..255 while the image is uint8, "
        "0..1 after a needs_float augmentation)",
    ),
]
PositiveSize = tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]]
UnitInterval = Annotated[float, Field(gt=0.0, le=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
