"""The `timm` backbone: any timm model that supports `features_only` (optional extra `toolkit[timm]`).

Registered only when timm is importable (`importlib.util.find_spec`), without importing timm or
torch: the factory imports `timm_modules` (and timm) when a model is built. Without timm, a spec
naming `timm` is told which extra to install (`toolkit.registry.missing_extra_hint`).
"""

from __future__ import annotations

import importlib.util
import itertools
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

import toolkit

if TYPE_CHECKING:
    from toolkit_plugins.backbones.timm_modules import TimmBackbone


def _pretrained_flag(value: Any) -> Any:
    """YAML booleans: true -> 'imagenet' (timm's weights), false -> 'none'."""
    if isinstance(value, bool):
        return "imagenet" if value else "none"
    return value


class TimmParams(BaseModel):
    """Spec parameters of the `timm` backbone."""

    model_config = ConfigDict(extra="forbid")
    model_name: Annotated[
        str,
        Field(
            min_length=1,
            description="a timm model name that supports features_only, e.g. 'resnet18', "
            "'mobilenetv3_small_100', 'efficientnet_b0' (a pretrained tag may follow: 'resnet18.a1_in1k')",
        ),
    ]
    pretrained: Annotated[
        Literal["none", "imagenet"],
        BeforeValidator(_pretrained_flag),
        Field(
            description="'none' (random init) or 'imagenet' / true (timm's default pretrained weights of "
            "model_name, downloaded by timm); a local state-dict file path is loaded by the core"
        ),
    ] = "none"
    out_indices: Annotated[
        list[Annotated[int, Field(ge=0)]] | None,
        Field(
            min_length=1,
            description="which of timm's feature levels to use (indices into feature_info, finest first); "
            "default: all of them. The last one is the features the head gets",
        ),
    ] = None
    frozen_stages: Annotated[
        int,
        Field(ge=0, description="0: nothing frozen; k: the modules computing the first k used levels"),
    ] = 0
    norm_eval: Annotated[bool, Field(description="keep BatchNorm of frozen parts in eval mode")] = True

    @field_validator("out_indices")
    @classmethod
    def _increasing(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(a >= b for a, b in itertools.pairwise(value)):
            raise ValueError(f"out_indices must be increasing (finest level first), got {value}")
        return value


def timm_backbone(**params: Any) -> TimmBackbone:
    """Any timm model with features_only; levels from timm's feature_info (pip install 'toolkit[timm]')."""
    from toolkit_plugins.backbones.timm_modules import TimmBackbone

    return TimmBackbone(**params)


def _input_multiple(params: BaseModel) -> int:
    """The lcm of the levels' strides, read off timm's model built on the meta device (imports timm)."""
    from toolkit_plugins.backbones.timm_modules import feature_levels, input_multiple

    name, indices = params.model_name, params.out_indices  # type: ignore[attr-defined]
    return input_multiple(feature_levels(name, tuple(indices) if indices else None))


@toolkit.hookimpl
def toolkit_register_backbones(registry: toolkit.Registry) -> None:
    """Register `timm` when timm is installed; otherwise nothing (the core names the extra)."""
    if importlib.util.find_spec("timm") is None:
        return
    registry.register(
        "timm",
        timm_backbone,
        params=TimmParams,
        input_multiple=_input_multiple,
        description="Any timm model with features_only (model_name); levels from timm's feature_info.",
    )
