"""What an attack maximizes: the task's objectives, and the input gradient that climbs them.

A task that can be attacked offers `attack_objectives` (names; the first is its default) and
`attack_loss(outputs, targets, objective=, target_class=)`: a per-image loss [N] that grows as
the attack succeeds (e.g. classification "untargeted": cross-entropy of the true label;
"targeted": minus the cross-entropy of `target_class`). Attacks only ever see this loss, so one
FGSM or PGD works for every task.

`attack_mode(model)` runs the model in eval mode with its parameters' `requires_grad` off: the
gradient reaches the images only, never the parameters, and BatchNorm statistics never move.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from toolkit.contracts import HasAttackObjectives, HasTask
from toolkit.errors import ToolkitError
from toolkit.inference import eval_mode


@contextmanager
def attack_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode, parameters frozen (`requires_grad` restored on exit, `.grad` never written)."""
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    try:
        for parameter, _ in flags:
            parameter.requires_grad_(False)
        with eval_mode(model):
            yield model
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def task_objectives(model: Any) -> HasAttackObjectives:
    """The model's task, checked to offer attack objectives."""
    task = model.task if isinstance(model, HasTask) else None
    if not isinstance(task, HasAttackObjectives):
        name = task.name if task is not None else type(model).__name__
        raise ToolkitError(
            f"task {name!r} defines no attack objectives (attack_objectives and attack_loss); "
            "see docs/attacks.md to add them"
        )
    return task


def resolve_objective(
    model: Any, objective: str | None, target_class: str | int | None
) -> tuple[str, int | None]:
    """(objective name, target class index) checked against the task and the model's classes.

    No objective: "targeted" when a target class is named and the task has it, else the task's
    default. A class may be given by name or index.
    """
    task = task_objectives(model)
    names = task.attack_objectives
    if objective is None:
        objective = "targeted" if target_class is not None and "targeted" in names else names[0]
    if objective not in names:
        raise ToolkitError(
            f"attack objective {objective!r} is not one of the {model.task.name} task's: {', '.join(names)}"
        )
    if target_class is None:
        return objective, None
    class_names = list(model.class_names)
    if isinstance(target_class, int) and not isinstance(target_class, bool):
        if not 0 <= target_class < len(class_names):
            raise ToolkitError(f"attack target_class {target_class} is outside 0..{len(class_names) - 1}")
        return objective, target_class
    if target_class not in class_names:
        raise ToolkitError(
            f"attack target_class {target_class!r} is not a class of the model: {', '.join(class_names)}"
        )
    return objective, class_names.index(target_class)


def attack_loss(
    model: Any, images: Tensor, targets: Mapping[str, Tensor], *, objective: str, target_class: int | None
) -> Tensor:
    """The task's per-image attack loss [N] of `model` on `images` (differentiable in the images)."""
    return task_objectives(model).attack_loss(
        model(images), targets, objective=objective, target_class=target_class
    )


def input_gradient(
    model: Any, images: Tensor, targets: Mapping[str, Tensor], *, objective: str, target_class: int | None
) -> tuple[Tensor, Tensor]:
    """(d sum(loss) / d images, per-image loss); call under `attack_mode` so parameters stay out of it."""
    x = images.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = attack_loss(model, x, targets, objective=objective, target_class=target_class)
        (gradient,) = torch.autograd.grad(loss.sum(), x)
    return gradient, loss.detach()
