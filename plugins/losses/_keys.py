"""Key lookup for loss inputs, with an error that names the loss, the key and what is available."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from toolkit.errors import ToolkitError

if TYPE_CHECKING:
    from torch import Tensor


def lookup(tensors: Mapping[str, Tensor], key: str, *, loss: str, what: str, fix: str) -> Tensor:
    """`tensors[key]`, or a ToolkitError: "`loss` loss: `what` have no 'key' (available: ...); `fix`"."""
    try:
        return tensors[key]
    except KeyError:
        available = ", ".join(sorted(map(str, tensors))) or "none"
        raise ToolkitError(f"{loss} loss: {what} have no {key!r} (available: {available}); {fix}") from None


def check_same_shape(loss: str, first: str, a: Tensor, second: str, b: Tensor) -> None:
    """Raise a ToolkitError naming both tensors when their shapes differ (no silent broadcasting)."""
    if a.shape != b.shape:
        raise ToolkitError(
            f"{loss} loss: {first} has shape {tuple(a.shape)} but {second} has shape {tuple(b.shape)}; "
            "they must match"
        )
