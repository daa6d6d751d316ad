"""CenterNet loss (focal heatmap + masked L1 size/offset), registered without importing torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

import toolkit

if TYPE_CHECKING:
    from toolkit_plugins.losses.centernet_loss import CenterNetLoss

Weight = Annotated[float, Field(ge=0, allow_inf_nan=False, description="multiplies the term")]


def centernet(
    heatmap_weight: Weight = 1.0,
    size_weight: Weight = 0.1,
    offset_weight: Weight = 1.0,
    giou_weight: Annotated[
        float,
        Field(
            ge=0,
            allow_inf_nan=False,
            description="weight of an extra 1 - GIoU term on the box at each centre (0: off, as the paper)",
        ),
    ] = 0.0,
    alpha: Annotated[
        float, Field(ge=0, allow_inf_nan=False, description="focal exponent on (1 - p) and p")
    ] = 2.0,
    beta: Annotated[
        float,
        Field(ge=0, allow_inf_nan=False, description="exponent of (1 - y): penalty reduction near centres"),
    ] = 4.0,
) -> CenterNetLoss:
    """CenterNet: penalty-reduced focal loss on the heatmap, L1 on size and offset at object centres."""
    from toolkit_plugins.losses.centernet_loss import CenterNetLoss

    return CenterNetLoss(
        heatmap_weight=heatmap_weight,
        size_weight=size_weight,
        offset_weight=offset_weight,
        giou_weight=giou_weight,
        alpha=alpha,
        beta=beta,
    )


@toolkit.hookimpl
def toolkit_register_losses(registry: toolkit.Registry) -> None:
    registry.register("centernet", centernet)
