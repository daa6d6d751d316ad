"""Photometric augmentations (torchvision.transforms.v2): pixels change, boxes and labels never do.

Registered without importing torch; each factory imports torchvision when it builds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, Field

import toolkit
from toolkit_plugins.augmentations import (
    PixelValue,
    PositiveFloat,
    Probability,
    UnitInterval,
    apply_with_probability,
    ordered_pair,
    tag,
)

if TYPE_CHECKING:
    from torchvision.transforms import v2

Strength = Annotated[float, Field(ge=0.0, le=10.0)]


def color_jitter(
    brightness: Annotated[Strength, Field(description="brightness factor drawn from [1-b, 1+b]")] = 0.2,
    contrast: Annotated[Strength, Field(description="contrast factor drawn from [1-c, 1+c]")] = 0.2,
    saturation: Annotated[Strength, Field(description="saturation factor drawn from [1-s, 1+s]")] = 0.2,
    hue: Annotated[float, Field(ge=0.0, le=0.5, description="hue shift drawn from [-h, h]")] = 0.0,
    p: Probability = 0.5,
) -> v2.Transform:
    """Random brightness, contrast, saturation and hue in random order (v2.ColorJitter)."""
    from torchvision.transforms import v2

    jitter = v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue)
    return tag(apply_with_probability(jitter, p))


def _is_plain_tensor(value: Any) -> bool:
    import torch

    return type(value) is torch.Tensor


def erasing(
    p: Probability = 0.5,
    scale: Annotated[
        tuple[UnitInterval, UnitInterval],
        AfterValidator(ordered_pair),
        Field(description="(min, max) erased area as a fraction of the image area"),
    ] = (0.02, 0.33),
    ratio: Annotated[
        tuple[PositiveFloat, PositiveFloat],
        AfterValidator(ordered_pair),
        Field(description="(min, max) aspect ratio height / width of the erased rectangle"),
    ] = (0.3, 3.3),
    value: PixelValue = 0.0,
) -> v2.Transform:
    """Paint a random rectangle with `value` (v2.RandomErasing); photometric only.

    Boxes, labels and masks are left untouched: an object that is erased, even completely,
    keeps its box and label.
    """
    import PIL.Image
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    transform = v2.RandomErasing(p=p, scale=scale, ratio=ratio, value=value)
    # Only images reach the transform; boxes, keypoints and masks pass through untouched (and
    # without v2's per-call "currently passing through" warning).
    transform._transformed_types = (tv_tensors.Image, tv_tensors.Video, PIL.Image.Image, _is_plain_tensor)
    return tag(transform)


def gaussian_noise(
    sigma: Annotated[
        float, Field(ge=0.0, le=1.0, description="noise standard deviation, image in [0, 1]")
    ] = 0.05,
    clip: Annotated[bool, Field(description="clip the result to [0, 1]")] = True,
    p: Probability = 0.5,
) -> v2.Transform:
    """Add zero-mean Gaussian noise (v2.GaussianNoise) to a float image in [0, 1]."""
    from torchvision.transforms import v2

    noise = v2.GaussianNoise(mean=0.0, sigma=sigma, clip=clip)
    return tag(apply_with_probability(noise, p), needs_float=True)


@toolkit.hookimpl
def toolkit_register_augmentations(registry: toolkit.Registry) -> None:
    registry.register("color_jitter", color_jitter)
    registry.register("erasing", erasing)
    registry.register("gaussian_noise", gaussian_noise)
