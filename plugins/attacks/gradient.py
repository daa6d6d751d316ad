"""FGSM and PGD (Goodfellow et al. 2015; Madry et al. 2018), registered without importing torch.

Both climb the model's task objective (toolkit.attacks.objectives): untargeted by default,
targeted when `target_class` is named; detectors: vanishing, untargeted, mislabel or appear.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

import toolkit

if TYPE_CHECKING:
    from toolkit_plugins.attacks.gradient_attacks import FGSM, PGD

Epsilon = Annotated[
    float, Field(ge=0.0, le=1.0, description="perturbation budget, images in [0, 1] (8/255 = 0.0314)")
]
Objective = Annotated[
    str | None,
    Field(
        description="the task's attack objective (default: targeted with target_class, else the task's first)"
    ),
]
TargetClass = Annotated[
    str | None, Field(description="class name to push towards (targeted, mislabel, appear)")
]


def fgsm(eps: Epsilon = 8 / 255, objective: Objective = None, target_class: TargetClass = None) -> FGSM:
    """One step of size eps along the sign of the input gradient: clip(x + eps * sign(grad), 0, 1)."""
    from toolkit_plugins.attacks.gradient_attacks import FGSM

    return FGSM(eps=eps, objective=objective, target_class=target_class)


def pgd(
    eps: Epsilon = 8 / 255,
    steps: Annotated[int, Field(ge=1, le=10_000, description="gradient steps")] = 10,
    step_size: Annotated[
        float | None, Field(gt=0.0, le=10.0, description="step length (default 2.5 * eps / steps)")
    ] = None,
    norm: Annotated[Literal["linf", "l2"], Field(description="the ball: L-infinity or L2")] = "linf",
    random_start: Annotated[bool, Field(description="start from a random point of the ball")] = True,
    seed: Annotated[int, Field(ge=0, description="seed of the random start")] = 0,
    objective: Objective = None,
    target_class: TargetClass = None,
) -> PGD:
    """Projected gradient ascent inside the eps ball (and [0, 1]), from a random start."""
    from toolkit_plugins.attacks.gradient_attacks import PGD

    return PGD(
        eps=eps,
        steps=steps,
        step_size=step_size,
        norm=norm,
        random_start=random_start,
        seed=seed,
        objective=objective,
        target_class=target_class,
    )


@toolkit.hookimpl
def toolkit_register_attacks(registry: toolkit.Registry) -> None:
    registry.register("fgsm", fgsm)
    registry.register("pgd", pgd)
