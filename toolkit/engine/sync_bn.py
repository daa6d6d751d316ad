"""`train.sync_bn`: BatchNorm statistics computed over the global batch of all DDP processes.

`torch.nn.SyncBatchNorm` runs on GPUs only; `SyncBatchNorm` here works with any device and backend
(gloo on CPU, nccl on CUDA): per channel, each process sums its values and squares, one
differentiable all-reduce (`torch.distributed.nn.functional.all_reduce`, whose backward
all-reduces the gradients) gives the global mean and variance, and the running statistics are
updated as one BatchNorm over the global batch would update them. State-dict keys are those of
BatchNorm, so checkpoints load into an ordinary model. Eval mode, frozen (`norm_eval`) layers and a
single process use the ordinary BatchNorm computation.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over inputs [N, C, ...] whose training statistics span every DDP process."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (
            self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        ):
            return super().forward(input)
        from torch.distributed.nn.functional import all_reduce

        self._check_input_dim(input)
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        values = input.float()
        count = torch.tensor([input.numel() / channels], dtype=torch.float32, device=input.device)
        local = torch.cat([values.sum(dims), values.square().sum(dims), count])
        total = all_reduce(local)  # differentiable: gradients flow to every process's inputs
        n = total[-1]
        mean = total[:channels] / n
        var = (total[channels : 2 * channels] / n - mean.square()).clamp_min(0)
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            momentum = (
                self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked.item())
            )
            with torch.no_grad():
                unbiased = var * (n / (n - 1).clamp_min(1))
                self.running_mean.mul_(1 - momentum).add_(
                    mean.detach().to(self.running_mean.dtype), alpha=momentum
                )
                self.running_var.mul_(1 - momentum).add_(
                    unbiased.detach().to(self.running_var.dtype), alpha=momentum
                )
        shape = [1, channels] + [1] * (input.dim() - 2)
        out = (values - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer of `module` by a `SyncBatchNorm` sharing its parameters and
    buffers (the same tensors: optimizers and freezing stay valid); returns the module."""
    if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
        converted = SyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            converted.weight = module.weight
            converted.bias = module.bias
        converted.running_mean = module.running_mean
        converted.running_var = module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        replaced = convert_sync_batchnorm(child)
        if replaced is not child:
            setattr(module, name, replaced)
    return module
