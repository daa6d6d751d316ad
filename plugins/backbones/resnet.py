"""ResNet-18/50 backbones (torchvision), registered without importing torch.

The factories import `resnet_modules` (and torch) only when a model is built, so listing plugins,
printing the schema and validating specs stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, Field

import toolkit

if TYPE_CHECKING:
    from toolkit_plugins.backbones.resnet_modules import ResNetBackbone


def _check_pretrained(value: str) -> str:
    if value in ("none", "imagenet"):
        return value
    if not Path(value).is_file():
        raise ValueError(
            f"pretrained must be 'none', 'imagenet' or the path of a state-dict file; {value!r} is not a file"
        )
    return value


Pretrained = Annotated[
    str,
    AfterValidator(_check_pretrained),
    Field(description="'none', 'imagenet' (torchvision weights, downloaded) or a local state-dict path"),
]
FrozenStages = Annotated[
    int,
    Field(
        ge=0,
        le=4,
        description="0: nothing frozen; k in 1..4: the stem and stages 1..k (4: everything)",
    ),
]
NormEval = Annotated[bool, Field(description="keep BatchNorm of frozen parts in eval mode")]
ZeroInitResidual = Annotated[
    bool, Field(description="residual branches start at zero (identity blocks): faster from-scratch training")
]
LastStride = Annotated[
    Literal[1, 2],
    Field(description="2: features at stride 32 (torchvision); 1: stage 4 keeps stride 16 (finer maps)"),
]


def resnet18(
    pretrained: Pretrained = "none",
    frozen_stages: FrozenStages = 0,
    norm_eval: NormEval = True,
    last_stride: LastStride = 2,
    zero_init_residual: ZeroInitResidual = False,
) -> ResNetBackbone:
    """ResNet-18 (torchvision), features at stride 32 with 512 channels."""
    from toolkit_plugins.backbones.resnet_modules import ResNetBackbone

    return ResNetBackbone(
        18,
        pretrained=pretrained,
        frozen_stages=frozen_stages,
        norm_eval=norm_eval,
        last_stride=last_stride,
        zero_init_residual=zero_init_residual,
    )


def resnet50(
    pretrained: Pretrained = "none",
    frozen_stages: FrozenStages = 0,
    norm_eval: NormEval = True,
    last_stride: LastStride = 2,
    zero_init_residual: ZeroInitResidual = False,
) -> ResNetBackbone:
    """ResNet-50 (torchvision), features at stride 32 with 2048 channels."""
    from toolkit_plugins.backbones.resnet_modules import ResNetBackbone

    return ResNetBackbone(
        50,
        pretrained=pretrained,
        frozen_stages=frozen_stages,
        norm_eval=norm_eval,
        last_stride=last_stride,
        zero_init_residual=zero_init_residual,
    )


@toolkit.hookimpl
def toolkit_register_backbones(registry: toolkit.Registry) -> None:
    registry.register("resnet18", resnet18)
    registry.register("resnet50", resnet50)
