"""Building blocks shared by the spec sections."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ComponentSpec(BaseModel):
    """A reference to a registered component: `{type: NAME, ...params}`."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    type: str


class StrictModel(BaseModel):
    """A spec section: unknown keys are errors, numbers are finite (no inf, no NaN)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
