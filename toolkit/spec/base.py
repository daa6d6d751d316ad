"""Building blocks shared by the spec sections."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ComponentSpec(BaseModel):
    """A reference to a registered component: `{type: NAME, ...params}`."""

    model_config = ConfigDict(extra="allow")
    type: str


class StrictModel(BaseModel):
    """A spec section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
