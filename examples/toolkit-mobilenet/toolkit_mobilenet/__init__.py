"""toolkit plugin: a MobileNetV3-Small backbone (torchvision).

Importing this module stays light: torch and torchvision are imported by the factory, only when
a model is built, so `toolkit plugins`, `toolkit schema` and `toolkit validate` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

import toolkit
from toolkit.errors import ToolkitError

if TYPE_CHECKING:
    from toolkit_mobilenet.backbone import MobileNetV3SmallBackbone

__version__ = "0.1.0"


def mobilenet_v3_small(
    pretrained: Annotated[
        Literal["none", "imagenet"],
        Field(description="'none' (random init) or 'imagenet' (torchvision weights, downloaded)"),
    ] = "none",
    width_mult: Annotated[
        float, Field(gt=0, le=2, description="channel multiplier; 'imagenet' weights need 1.0")
    ] = 1.0,
) -> MobileNetV3SmallBackbone:
    """MobileNetV3-Small (torchvision), features at stride 32 (576 channels at width_mult 1.0)."""
    if pretrained == "imagenet" and width_mult != 1.0:
        raise ToolkitError(
            f"mobilenet_v3_small: imagenet weights exist only for width_mult 1.0, got {width_mult}; "
            "use pretrained: none or width_mult: 1.0"
        )
    from toolkit_mobilenet.backbone import MobileNetV3SmallBackbone

    return MobileNetV3SmallBackbone(pretrained=pretrained, width_mult=width_mult)


@toolkit.hookimpl
def toolkit_register_backbones(registry: toolkit.Registry) -> None:
    """Register `mobilenet_v3_small`; its spec parameters come from the factory's type hints.

    `input_multiple=32` (its stride) lets `toolkit validate` check input sizes without building it.
    """
    registry.register("mobilenet_v3_small", mobilenet_v3_small, input_multiple=32)
