"""A small backbone and a contract-breaking one, for fast model tests."""

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
