"""`train.sync_bn`: BatchNorm statistics computed over the global batch of all DDP processes.

`torch.nn.SyncBatchNorm` runs on GPUs only; `SyncBatchNorm` here works with any device and backend
(gloo on CPU, nccl on CUDA): per channel, each process sums its values and squares, one
differentiable all-reduce (`all_reduce_sum`, whose backward all-reduces the gradients) gives the
global mean and variance, and the running statistics are updated as one BatchNorm over the global
batch would update them. State-dict keys are those of BatchNorm, so checkpoints load into an
ordinary model. Eval mode, frozen (`norm_eval`) layers and a single process use the ordinary
BatchNorm computation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(grad_output)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of `tensor` over every process of the default process group, as a new
    tensor (`tensor` is left as it is), differentiable.

    Every process must call it, in the same order as its other collectives, with a tensor of the
    same shape and dtype; it blocks until the sum has arrived. Every process then holds the same
    sum S = x_0 + ... + x_{W-1}, and each computes its own loss L_r from it: the gradient process r
    needs for its x_r is that of the total loss L_0 + ... + L_{W-1}, which is the sum over the
    processes of their gradients of S. So the backward all-reduces (SUM) the incoming gradient,
    differentiably in turn, and every process must run its backward through this call as well.

    It computes what the deprecated `torch.distributed.nn.functional.all_reduce` (op SUM) did, with
    the public blocking `torch.distributed.all_reduce` (the deprecation points to the private,
    asynchronous `torch.distributed._functional_collectives.all_reduce`). The default group is looked
    up at each call and kept nowhere: importing `torch.distributed.nn.functional` after
    `init_process_group`, as this module once did, bound that group into the defaults of its
    functions, so `destroy_process_group` no longer freed it and gloo's worker threads lived on into
    the interpreter's finalization, where one releasing a tensor aborts the process.
    """
    return _AllReduceSum.apply(tensor)


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
        self._check_input_dim(input)
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        values = input.float()
        count = torch.tensor([input.numel() / channels], dtype=torch.float32, device=input.device)
        local = torch.cat([values.sum(dims), values.square().sum(dims), count])
        total = all_reduce_sum(local)  # differentiable: gradients flow to every process's inputs
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
