"""Geometric augmentations (torchvision.transforms.v2): the boxes follow the pixels.

Registered without importing torch; each factory imports torchvision when it builds. Boxes are
clamped to the image by torchvision according to their `clamping_mode` (the default "soft"
clamps XYXY boxes like "hard"). v2's resize does not clamp, and float rounding can leave a border
box a hair outside the image (x2 = W + 1e-5), which `SanitizeBoundingBoxes` would drop as out of
bounds: the resizing crop and jitter therefore end with `v2.ClampBoundingBoxes`. Transforms that
can move an object out of the image leave a degenerate (zero-width or zero-height) box with its
label still in place; the `v2.SanitizeBoundingBoxes` that the pipeline builder appends removes
such boxes (and boxes with a side under 1 px) together with their labels, so boxes and labels
stay aligned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, Field

import toolkit
from toolkit_plugins.augmentations import (
    PixelValue,
    PositiveFloat,
    PositiveSize,
    Probability,
    UnitInterval,
    apply_with_probability,
    ordered_pair,
    tag,
)

if TYPE_CHECKING:
    from torchvision.transforms import v2

    from toolkit.data.letterbox import Letterbox

Angle = Annotated[float, Field(ge=-180.0, le=180.0)]
ShearAngle = Annotated[float, Field(gt=-90.0, lt=90.0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Ratio = Annotated[float, Field(gt=0.0, le=10.0)]
AreaRange = Annotated[
    tuple[UnitInterval, UnitInterval],
    AfterValidator(ordered_pair),
    Field(description="(min, max) area of the crop as a fraction of the image area, in (0, 1]"),
]
RatioRange = Annotated[
    tuple[Ratio, Ratio],
    AfterValidator(ordered_pair),
    Field(description="(min, max) aspect ratio width / height of the crop"),
]
OutputSize = Annotated[
    PositiveSize | None,
    Field(description="output (height, width); default: the model input size"),
]


def _require_size(
    size: tuple[int, int] | None, input_size: tuple[int, int] | None, name: str
) -> tuple[int, int]:
    chosen = size if size is not None else input_size
    if chosen is None:
        raise ValueError(f"augmentation {name!r} needs an output size: set it or pass input_size")
    return (int(chosen[0]), int(chosen[1]))


def hflip(p: Probability = 0.5) -> v2.Transform:
    """Horizontal flip with probability p; boxes are mirrored (x1, x2 -> W - x2, W - x1)."""
    from torchvision.transforms import v2

    return tag(v2.RandomHorizontalFlip(p=p))


def vflip(p: Probability = 0.5) -> v2.Transform:
    """Vertical flip with probability p, for images with no up (microscopy, aerial); boxes are mirrored
    (y1, y2 -> H - y2, H - y1)."""
    from torchvision.transforms import v2

    return tag(v2.RandomVerticalFlip(p=p))


def rot90(p: Probability = 0.5) -> v2.Transform:
    """With probability p, rotate by 90, 180 or 270 degrees (drawn evenly), for images with no up;
    width and height swap at 90 and 270. Pixels move exactly (no interpolation), and so do boxes."""
    from torchvision.transforms import v2

    turns = [
        v2.RandomRotation((angle, angle), interpolation=v2.InterpolationMode.NEAREST, expand=True)
        for angle in (90.0, 180.0, 270.0)
    ]
    return tag(apply_with_probability(v2.RandomChoice(turns), p))


def affine(
    degrees: Annotated[
        tuple[Angle, Angle],
        AfterValidator(ordered_pair),
        Field(description="(min, max) rotation in degrees, counter-clockwise, about the image centre"),
    ] = (-10.0, 10.0),
    translate: Annotated[
        tuple[Fraction, Fraction],
        Field(description="largest horizontal and vertical shift, as fractions of width and height"),
    ] = (0.1, 0.1),
    scale: Annotated[
        tuple[PositiveFloat, PositiveFloat],
        AfterValidator(ordered_pair),
        Field(description="(min, max) zoom factor"),
    ] = (0.9, 1.1),
    shear: Annotated[
        tuple[ShearAngle, ShearAngle],
        AfterValidator(ordered_pair),
        Field(description="(min, max) shear parallel to the x axis, in degrees"),
    ] = (0.0, 0.0),
    shear_y: Annotated[
        tuple[ShearAngle, ShearAngle],
        AfterValidator(ordered_pair),
        Field(description="(min, max) shear parallel to the y axis, in degrees"),
    ] = (0.0, 0.0),
    fill: PixelValue = 0.0,
    p: Probability = 1.0,
) -> v2.Transform:
    """Random rotation, translation, zoom and shear (v2.RandomAffine, bilinear).

    Each box becomes the axis-aligned envelope of its four transformed corners, clamped to the
    image: exact for the box, loose for a rotated object (the envelope of a rotated box is larger
    than the object). Objects moved out of the image leave degenerate boxes for the sanitizer.
    """
    from torchvision.transforms import v2

    transform = v2.RandomAffine(
        degrees=degrees,
        translate=translate,
        scale=scale,
        shear=(*shear, *shear_y),
        interpolation=v2.InterpolationMode.BILINEAR,
        fill=fill,
    )
    return tag(apply_with_probability(transform, p))


def random_resized_crop(
    scale: AreaRange = (0.25, 1.0),
    ratio: RatioRange = (3 / 4, 4 / 3),
    size: OutputSize = None,
    *,
    input_size: tuple[int, int] | None = None,
) -> v2.Transform:
    """Crop a random region (area fraction `scale`, aspect `ratio`) and resize it to `size`.

    The aspect ratio changes unless `ratio` matches the output's. Boxes are cut to the crop and
    scaled; an object outside the crop keeps a degenerate box that the sanitizer removes. A
    partly visible object keeps its clipped box however little of it is left (>= 1 px).
    """
    from torchvision.transforms import v2

    output = _require_size(size, input_size, "random_resized_crop")
    crop = v2.RandomResizedCrop(size=output, scale=scale, ratio=ratio, antialias=True)
    return tag(v2.Compose([crop, v2.ClampBoundingBoxes()]))


def random_crop(
    size: OutputSize = None,
    fill: PixelValue = 0.0,
    *,
    input_size: tuple[int, int] | None = None,
) -> v2.Transform:
    """Cut a random `size` window at the image's own scale (no resizing): training on crops of
    large images for sliced inference, whose tiles are the same windows. A smaller image is
    padded with `fill` first. Boxes are cut to the window; objects outside it leave degenerate
    boxes for the sanitizer."""
    from torchvision.transforms import v2

    output = _require_size(size, input_size, "random_crop")
    return tag(v2.RandomCrop(size=output, pad_if_needed=True, fill=fill))


def _check_sampler_options(options: tuple[float, ...]) -> tuple[float, ...]:
    if 1.0 not in options:
        raise ValueError(
            "must contain 1.0 (keep the image uncropped); without it RandomIoUCrop retries forever on "
            "images with no boxes or with no box any crop satisfies"
        )
    return options


def iou_crop(
    scale: Annotated[
        tuple[UnitInterval, UnitInterval],
        AfterValidator(ordered_pair),
        Field(description="(min, max) side of the crop as a fraction of the image side"),
    ] = (0.3, 1.0),
    aspect_ratio: RatioRange = (0.5, 2.0),
    sampler_options: Annotated[
        tuple[Fraction, ...],
        AfterValidator(_check_sampler_options),
        Field(
            min_length=1,
            description="minimum IoU between a kept box and the crop, one drawn per sample; "
            "1.0 means no crop and must be present",
        ),
    ] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
    trials: Annotated[int, Field(ge=1, le=1000, description="crops tried per drawn IoU")] = 40,
    p: Probability = 1.0,
) -> v2.Transform:
    """SSD IoU crop (v2.RandomIoUCrop): a crop that overlaps some box by the drawn minimum IoU.

    Detection only (the sample must contain boxes). Output size varies: follow it with `resize`.
    Boxes whose centre falls outside the crop are zeroed and removed by the sanitizer with their
    labels, even when part of the object stays visible; the others are clipped to the crop.
    """
    from torchvision.transforms import v2

    transform = v2.RandomIoUCrop(
        min_scale=scale[0],
        max_scale=scale[1],
        min_aspect_ratio=aspect_ratio[0],
        max_aspect_ratio=aspect_ratio[1],
        sampler_options=list(sampler_options),
        trials=trials,
    )
    return tag(apply_with_probability(transform, p))


def zoom_out(
    side_range: Annotated[
        tuple[Annotated[float, Field(ge=1.0, le=10.0)], Annotated[float, Field(ge=1.0, le=10.0)]],
        AfterValidator(ordered_pair),
        Field(description="(min, max) factor by which the canvas sides grow, >= 1"),
    ] = (1.0, 4.0),
    fill: PixelValue = 0.0,
    p: Probability = 0.5,
) -> v2.Transform:
    """Place the image at a random spot of a larger `fill` canvas (v2.RandomZoomOut).

    Boxes are shifted with the image and never leave it. Output size varies: follow with `resize`.
    """
    from torchvision.transforms import v2

    return tag(v2.RandomZoomOut(fill=fill, side_range=side_range, p=p))


def scale_jitter(
    target_size: OutputSize = None,
    scale_range: Annotated[
        tuple[Annotated[float, Field(gt=0.0, le=10.0)], Annotated[float, Field(gt=0.0, le=10.0)]],
        AfterValidator(ordered_pair),
        Field(description="(min, max) factor applied to the scale that fits target_size"),
    ] = (0.1, 2.0),
    *,
    input_size: tuple[int, int] | None = None,
) -> v2.Transform:
    """Large-scale jitter (v2.ScaleJitter): aspect-preserving resize to a random multiple of the fit.

    The image is scaled by `s * min(H_t / H, W_t / W)` with `s` drawn from `scale_range` and
    `target_size` = (H_t, W_t), so `s = 1` fits it inside `target_size`.

    Boxes are scaled with the image and stay inside it. Output size varies: follow it with a
    crop or `resize`.
    """
    from torchvision.transforms import v2

    height, width = _require_size(target_size, input_size, "scale_jitter")
    # v2.ScaleJitter reads its target_size as (width, height), unlike every other v2 size.
    jitter = v2.ScaleJitter(target_size=(width, height), scale_range=scale_range, antialias=True)
    return tag(v2.Compose([jitter, v2.ClampBoundingBoxes()]))


def resize(fill: PixelValue = 0.0, *, input_size: tuple[int, int] | None = None) -> Letterbox:
    """Letterbox to the model input size: keep the aspect ratio, centre, pad with `fill`.

    The last training step: evaluation and prediction apply the same letterbox (with fill 0) as the
    model's own preprocessing. Adds `target["letterbox"] = [scale, pad_left, pad_top]` (also for
    classification targets); `toolkit.data.letterbox.unletterbox_boxes` maps boxes back.
    """
    from toolkit.data.letterbox import Letterbox

    return tag(Letterbox(_require_size(None, input_size, "resize"), fill=fill))


@toolkit.hookimpl
def toolkit_register_augmentations(registry: toolkit.Registry) -> None:
    registry.register("hflip", hflip)
    registry.register("vflip", vflip)
    registry.register("rot90", rot90)
    registry.register("affine", affine)
    registry.register("random_resized_crop", random_resized_crop)
    registry.register("random_crop", random_crop)
    registry.register("iou_crop", iou_crop)
    registry.register("zoom_out", zoom_out)
    registry.register("scale_jitter", scale_jitter)
    registry.register("resize", resize)
