"""ResNet-18/50 backbones (torchvision), registered without importing torch.

Both register with one explicit pydantic params model (`ResNetParams`); the factories import
`resnet_modules` (and torch) only when a model is built, so listing plugins, printing the schema
and validating specs stay fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

import toolkit

if TYPE_CHECKING:
    from toolkit_plugins.backbones.resnet_modules import ResNetBackbone


class ResNetParams(BaseModel):
    """Spec parameters shared by resnet18 and resnet50."""

    model_config = ConfigDict(extra="forbid")
    pretrained: Annotated[
        Literal["none", "imagenet"],
        Field(
            description="'none' or 'imagenet' (torchvision weights, downloaded); a local state-dict file "
            "path is handled by the core for every backbone"
        ),
    ] = "none"
    frozen_stages: Annotated[
        int, Field(ge=0, le=4, description="0: nothing frozen; k in 1..4: the stem and stages 1..k (4: all)")
    ] = 0
    norm_eval: Annotated[bool, Field(description="keep BatchNorm of frozen parts in eval mode")] = True
    last_stride: Annotated[
        Literal[1, 2],
        Field(description="2: features at stride 32 (torchvision); 1: stage 4 keeps stride 16 (finer maps)"),
    ] = 2
    zero_init_residual: Annotated[
        bool,
        Field(description="residual branches start at zero (identity blocks): faster from-scratch training"),
    ] = False
    width: Annotated[
        float,
        Field(
            gt=0,
            le=4,
            description="channel multiplier of every stage (0.5: half the channels, about a quarter of the "
            "compute; counts rounded to multiples of 8); ImageNet weights need width 1",
        ),
    ] = 1.0


def resnet_factory(depth: int) -> Callable[..., ResNetBackbone]:
    """A factory building the ResNet-`depth` backbone from validated ResNetParams fields."""

    def build(**params: Any) -> ResNetBackbone:
        from toolkit_plugins.backbones.resnet_modules import ResNetBackbone

        return ResNetBackbone(depth, **params)

    build.__name__ = build.__qualname__ = f"resnet{depth}"
    return build


def _input_multiple(params: BaseModel) -> int:
    """Input sides must be multiples of the largest stride: 32, or 16 with last_stride 1."""
    return 32 if params.last_stride == 2 else 16  # type: ignore[attr-defined]


@toolkit.hookimpl
def toolkit_register_backbones(registry: toolkit.Registry) -> None:
    registry.register(
        "resnet18",
        resnet_factory(18),
        params=ResNetParams,
        input_multiple=_input_multiple,
        description="ResNet-18 (torchvision), 512-channel features at stride 32 (16 with last_stride: 1).",
    )
    registry.register(
        "resnet50",
        resnet_factory(50),
        params=ResNetParams,
        input_multiple=_input_multiple,
        description="ResNet-50 (torchvision), 2048-channel features at stride 32 (16 with last_stride: 1).",
    )
