"""Regression losses (L1 between a named output and a named target), registered without importing torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

import toolkit

if TYPE_CHECKING:
    from toolkit_plugins.losses.regression_losses import L1Loss


def l1(
    output_key: Annotated[str, Field(min_length=1, description="key of the model output to compare")],
    target_key: Annotated[str, Field(min_length=1, description="key of the target to compare it with")],
    weight: Annotated[float, Field(ge=0, allow_inf_nan=False, description="multiplies the term")] = 1.0,
) -> L1Loss:
    """Mean absolute error between one model output and one target of the same shape."""
    from toolkit_plugins.losses.regression_losses import L1Loss

    return L1Loss(output_key, target_key, weight=weight)


@toolkit.hookimpl
def toolkit_register_losses(registry: toolkit.Registry) -> None:
    registry.register("l1", l1)
