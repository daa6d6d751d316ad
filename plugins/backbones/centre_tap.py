"""3x3 convolutions on 1x1 maps trained as the 1x1 convolutions they are.

With padding 1, a 3x3 kernel over a 1x1 map sees data through its centre tap only: the output is
`conv2d(x, weight[:, :, 1:2, 1:2])` and the other taps' gradients are zero. oneDNN computes the
weight gradient of the 3x3 form about 15x slower than its forward pass (ResNet-18's stage 4 on
32 x 32 images: half the training step), so in training, with gradients on, `CentreTapConv2d`
takes the 1x1 form: same outputs and gradients up to float rounding. Evaluation and export keep
the plain 3x3 convolution (no shape-dependent branch reaches a traced graph).
`benchmarks/centre_tap.py` measures the step it saves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CentreTapConv2d(nn.Conv2d):
    """An `nn.Conv2d` (3x3, padding 1, dilation 1) whose training pass on 1x1 maps uses the centre tap."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled() and x.shape[-2:] == (1, 1):
            centre = self.weight[:, :, 1:2, 1:2]
            return F.conv2d(x, centre, self.bias, self.stride, 0, 1, self.groups)
        return super().forward(x)


def qualifies(module: nn.Module) -> bool:
    """A plain zero-padded 3x3 convolution with padding 1 and dilation 1."""
    return (
        type(module) is nn.Conv2d
        and module.kernel_size == (3, 3)
        and module.padding == (1, 1)
        and module.dilation == (1, 1)
        and module.padding_mode == "zeros"
    )


def use_centre_tap(model: nn.Module) -> None:
    """Turn every qualifying 3x3 convolution of `model` into a `CentreTapConv2d` in place (the same
    parameters, state-dict keys and hooks)."""
    for module in model.modules():
        if qualifies(module):
            module.__class__ = CentreTapConv2d


def use_plain_conv(model: nn.Module) -> None:
    """The reverse of `use_centre_tap`: every `CentreTapConv2d` back to a plain `nn.Conv2d`."""
    for module in model.modules():
        if isinstance(module, CentreTapConv2d):
            module.__class__ = nn.Conv2d
