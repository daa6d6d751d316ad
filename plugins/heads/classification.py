"""Classification head (global average pooling, dropout, linear), registered without importing torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

import toolkit

if TYPE_CHECKING:
    from toolkit_plugins.heads.classification_modules import ClassificationHead


def classification(
    in_channels: int,
    stride: int,
    num_classes: int,
    dropout: Annotated[float, Field(ge=0.0, lt=1.0, description="dropout before the linear layer")] = 0.0,
    pooling: Annotated[
        Literal["avg", "max"],
        Field(description="global pooling: avg (ResNet's) or max (presence of a small object anywhere)"),
    ] = "avg",
) -> ClassificationHead:
    """Image classification: global average (or max) pooling -> dropout -> linear."""
    from toolkit_plugins.heads.classification_modules import ClassificationHead

    return ClassificationHead(in_channels, stride, num_classes, dropout=dropout, pooling=pooling)


@toolkit.hookimpl
def toolkit_register_heads(registry: toolkit.Registry) -> None:
    registry.register("classification", classification)
