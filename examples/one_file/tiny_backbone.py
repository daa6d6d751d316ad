"""A backbone plugin in one file (`toolkit -p tiny_backbone ...` with this folder on PYTHONPATH): three
strided 3x3 convolutions, `width`-channel features at stride 8."""

from typing import Annotated

from pydantic import Field
from torch import Tensor, nn

import toolkit


class TinyBackbone(nn.Module):
    def __init__(self, width: Annotated[int, Field(ge=8, le=512)] = 32) -> None:
        super().__init__()
        self.out_channels, self.stride = width, 8
        convs = [nn.Conv2d(3 if i == 0 else width, width, 3, stride=2, padding=1) for i in range(3)]
        self.body = nn.Sequential(*(m for conv in convs for m in (conv, nn.BatchNorm2d(width), nn.ReLU())))

    def forward(self, images: Tensor) -> Tensor:
        return self.body(images)


@toolkit.hookimpl
def toolkit_register_backbones(registry: toolkit.Registry) -> None:
    registry.register("tiny", TinyBackbone, description="three strided convolutions, stride 8")
