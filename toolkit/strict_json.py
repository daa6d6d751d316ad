"""Strict JSON for reports: NaN and infinities become null (Python's json writes bare NaN otherwise)."""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """`value` with every non-finite float (at any depth of dicts, lists and tuples) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, *, indent: int | None = 2) -> str:
    """Strict JSON text of `value` (numbers such as numpy floats as floats, NaN as null)."""
    return json.dumps(finite(json.loads(json.dumps(value, default=float))), indent=indent, allow_nan=False)
