"""Small backbones (strides 16, 32, 64) and contract-breaking ones, for fast model tests."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

import toolkit


def tiny(width: Annotated[int, Field(ge=1, le=64)] = 8) -> Any:
    """A 5-layer conv net with stride 32."""
    from torch import nn

    layers: list[nn.Module] = []
    channels = 3
    for _ in range(5):
        layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.ReLU()]
        channels = width
    net = nn.Sequential(*layers)
    net.out_channels = width  # type: ignore[assignment]
    net.stride = 32  # type: ignore[assignment]
    return net


class NotAModuleParams(BaseModel):
    """Explicit params model (instead of one derived from the signature)."""

    model_config = ConfigDict(extra="forbid")
    size: Annotated[int, Field(gt=0)] = 3


def not_a_module(**params: Any) -> dict:
    """Returns a dict: breaks the backbone contract."""
    return dict(params)


@toolkit.hookimpl
def toolkit_register_backbones(registry: toolkit.Registry) -> None:
    registry.register("tiny", tiny)
    registry.register("not_a_module", not_a_module, params=NotAModuleParams, description="broken on purpose")
    registry.register("tiny16", tiny16)
    registry.register("tiny64", tiny64, input_multiple=64)
    registry.register("no_stride", no_stride)


def _strided(width: int, stride: int) -> Any:
    from torch import nn

    layers: list[nn.Module] = []
    channels = 3
    for _ in range(stride.bit_length() - 1):  # one stride-2 conv per factor of 2
        layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.ReLU()]
        channels = width
    net = nn.Sequential(*layers)
    net.out_channels = width  # type: ignore[assignment]
    net.stride = stride  # type: ignore[assignment]
    return net


def tiny16(width: Annotated[int, Field(ge=1, le=64)] = 8) -> Any:
    """Stride 16; declares no input multiple at registration (the builder reads `stride`)."""
    return _strided(width, 16)


def tiny64(width: Annotated[int, Field(ge=1, le=64)] = 8) -> Any:
    """Stride 64; declares its input multiple at registration (validate checks without building)."""
    return _strided(width, 64)


def no_stride(width: Annotated[int, Field(ge=1, le=64)] = 8) -> Any:
    """A module with out_channels but no stride: breaks the backbone contract."""
    net = _strided(width, 32)
    del net.stride
    return net
