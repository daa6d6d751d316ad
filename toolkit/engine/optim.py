"""Optimizer (with backbone learning-rate multiplier, no decay on norms and biases) and per-step schedules."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from toolkit.spec.train import SGD, Adam, AdamW, Constant, Cosine, OneCycle, Step, TrainSpec


def parameter_groups(model: nn.Module, lr: float, weight_decay: float, backbone_lr_mult: float) -> list[dict]:
    """Four groups: backbone / rest x decayed / not decayed (biases and norm weights, ndim <= 1).

    Frozen parameters are included so that unfreezing later needs no new optimizer.
    """
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        part = "backbone" if name.startswith("backbone.") else "head"
        groups.setdefault((part, parameter.ndim > 1), []).append(parameter)
    result = []
    for (part, decay), params in sorted(groups.items()):
        result.append(
            {
                "params": params,
                "lr": lr * (backbone_lr_mult if part == "backbone" else 1.0),
                "weight_decay": weight_decay if decay else 0.0,
                "name": f"{part}{'' if decay else '.no_decay'}",
            }
        )
    return result


def build_optimizer(model: nn.Module, train: TrainSpec) -> torch.optim.Optimizer:
    """The spec's optimizer over `parameter_groups`: Adam(W) fused (one kernel per step), SGD foreach."""
    config = train.optimizer
    groups = parameter_groups(model, config.lr, config.weight_decay, train.backbone_lr_mult)
    speed = {"fused": True} if _fusable(model) else {}
    if isinstance(config, SGD):  # fused SGD fails once frozen parameters start training (torch 2.14)
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, foreach=True
        )
    if isinstance(config, Adam):
        return torch.optim.Adam(groups, lr=config.lr, betas=config.betas, **speed)
    if isinstance(config, AdamW):
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, **speed)
    raise TypeError(f"unsupported optimizer {config!r}")


def _fusable(model: nn.Module) -> bool:
    """Fused steps need floating-point parameters on the CPU or CUDA."""
    parameters = list(model.parameters())
    return bool(parameters) and all(
        p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in parameters
    )


def lr_factor(
    train: TrainSpec, steps_per_epoch: int, total_steps: Callable[[], int] | None = None
) -> Callable[[int], float]:
    """Learning-rate factor at a (0-based) optimizer step: warmup x schedule. The schedule runs over
    `train.epochs` epochs, or over `total_steps()` steps when given (a time budget's fitted length,
    read at every step)."""
    planned = max(1, train.epochs * steps_per_epoch)
    schedule = train.schedule
    warmup = train.warmup_steps

    def shape(step: int) -> float:
        total = max(1, total_steps()) if total_steps is not None else planned
        progress = min(step / total, 1.0)
        if isinstance(schedule, Constant):
            return 1.0
        if isinstance(schedule, Cosine):
            return schedule.min_lr_ratio + (1 - schedule.min_lr_ratio) * 0.5 * (
                1 + math.cos(math.pi * progress)
            )
        if isinstance(schedule, Step):
            epoch = step // max(1, steps_per_epoch)
            return schedule.gamma ** sum(epoch >= m for m in schedule.milestones)
        if isinstance(schedule, OneCycle):
            start = 1 / schedule.div_factor
            end = start / schedule.final_div_factor
            if progress < schedule.pct_start:
                phase = progress / schedule.pct_start
                return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * phase))
            phase = (progress - schedule.pct_start) / (1 - schedule.pct_start)
            return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * phase))
        raise TypeError(f"unsupported schedule {schedule!r}")

    def factor(step: int) -> float:
        ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
        return ramp * shape(step)

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    train: TrainSpec,
    steps_per_epoch: int,
    total_steps: Callable[[], int] | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimizer step (see `lr_factor`)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(train, steps_per_epoch, total_steps))
