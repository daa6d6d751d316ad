"""A loss that turns NaN after a given number of calls (to test the trainer's NaN stop)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

import toolkit


def nan_after(calls: Annotated[int, Field(ge=0)] = 3) -> Any:
    """Cross-entropy for `calls` calls, then NaN."""
    import torch
    from torch.nn import functional

    class NanAfter(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def forward(self, outputs: dict, targets: dict) -> dict:
            self.calls += 1
            loss = functional.cross_entropy(outputs["logits"], targets["label"])
            if self.calls > calls:
                loss = loss * float("nan")
            return {"cross_entropy": loss, "loss": loss}

    return NanAfter()


@toolkit.hookimpl
def toolkit_register_losses(registry: toolkit.Registry) -> None:
    registry.register("nan_after", nan_after)
