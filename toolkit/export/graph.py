"""What goes into the graph: [0, 1] images in, the task's named outputs out (decoding included)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from toolkit.errors import ToolkitError
from toolkit.model import ToolkitModel


def output_names(model: ToolkitModel, *, decode: bool) -> list[str]:
    """The exported outputs: the task's `output_names` (decoded graph) or the head's raw outputs."""
    if decode:
        return list(model.task.output_names)
    height, width = model.input_size
    with torch.no_grad():
        raw = model(torch.zeros(1, 3, height, width, device=model.input_mean.device))
    return sorted(raw)


class ExportGraph(nn.Module):
    """`forward(images [N,3,H,W] float in [0, 1]) -> tuple` of the outputs named by `output_names`.

    With `decode` each name is looked up in the decoded outputs first, then in the raw head outputs
    (so a task may export raw tensors next to decoded ones, e.g. classification `logits`).
    """

    def __init__(self, model: ToolkitModel, names: list[str], *, decode: bool) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)
        self.decode = decode

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raw = self.model(images)
        outputs: Mapping[str, torch.Tensor] = {**raw, **self.model.decode(raw)} if self.decode else raw
        missing = [name for name in self.names if name not in outputs]
        if missing:
            raise ToolkitError(
                f"task {self.model.task.name!r} names export outputs {missing} that neither the head's "
                f"decode nor its raw outputs provide (they have {sorted(outputs)})"
            )
        return tuple(outputs[name] for name in self.names)
