"""CenterNet head ("objects as points"), registered without importing torch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

import toolkit

if TYPE_CHECKING:
    from toolkit_plugins.heads.centernet_modules import CenterNetHead


def centernet(
    in_channels: int,
    stride: int,
    num_classes: int,
    levels: Sequence[tuple[int, int]] | None = None,
    neck_channels: Annotated[
        tuple[Annotated[int, Field(ge=1)], ...],
        Field(min_length=1, max_length=5, description="channels of each x2 upsampling stage"),
    ] = (256, 128, 64),
    head_conv: Annotated[int, Field(ge=1, description="channels of the 3x3 conv in each branch")] = 64,
    max_detections: Annotated[int, Field(ge=1, le=1000, description="K of the top-K decode")] = 100,
    max_objects: Annotated[
        int, Field(ge=1, le=1000, description="target slots per image; extra objects dropped with a warning")
    ] = 128,
    min_overlap: Annotated[
        float, Field(gt=0, lt=1, description="IoU the gaussian radius guarantees (CenterNet: 0.7)")
    ] = 0.7,
    box_region: Annotated[
        float,
        Field(
            ge=0,
            le=1,
            description="TTFNet's dense box targets: every cell within this fraction of an object's box "
            "around its centre learns the whole box through the loss's GIoU term (needs the centernet "
            "loss's giou_weight > 0); 0: the centre cell only, as CenterNet",
        ),
    ] = 0.0,
    skips: Annotated[
        bool,
        Field(
            description="add the backbone's feature map of the same stride to each neck stage "
            "(U-Net style skip connections: sharper small objects; needs a backbone with levels)"
        ),
    ] = False,
    separable: Annotated[
        bool,
        Field(
            description="depthwise-separable 3x3 convolutions (MobileNet style) in the skip neck and the "
            "branches: the light head, several times less compute"
        ),
    ] = False,
) -> CenterNetHead:
    """CenterNet: upsampling neck, heatmap + size + offset branches, top-K peak decode."""
    from toolkit_plugins.heads.centernet_modules import CenterNetHead

    return CenterNetHead(
        in_channels,
        stride,
        num_classes,
        neck_channels=neck_channels,
        head_conv=head_conv,
        max_detections=max_detections,
        max_objects=max_objects,
        min_overlap=min_overlap,
        box_region=box_region,
        skips=skips,
        separable=separable,
        levels=levels,
    )


@toolkit.hookimpl
def toolkit_register_heads(registry: toolkit.Registry) -> None:
    registry.register("centernet", centernet)
