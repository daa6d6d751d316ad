"""MobileNetV3SmallBackbone: torchvision's MobileNetV3-Small feature extractor (imports torch)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import MobileNet_V3_Small_Weights
from torchvision.models import mobilenet_v3_small as tv_mobilenet_v3_small


class MobileNetV3SmallBackbone(nn.Module):
    """`forward(images[N,3,H,W]) -> features[N,out_channels,H/32,W/32]`."""

    stride = 32

    def __init__(self, *, pretrained: str = "none", width_mult: float = 1.0) -> None:
        super().__init__()
        weights = MobileNet_V3_Small_Weights.IMAGENET1K_V1 if pretrained == "imagenet" else None
        self.features = tv_mobilenet_v3_small(weights=weights, width_mult=width_mult).features
        self.out_channels = _last_conv(self.features).out_channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)


def _last_conv(module: nn.Module) -> nn.Conv2d:
    """The last Conv2d of `module` in registration order (the one that sets the feature channels)."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(module).__name__} has no Conv2d layer")
    return convs[-1]
