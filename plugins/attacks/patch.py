"""Adversarial patch (Brown et al., 2017), registered without importing torch.

A square sticker optimized by expectation over transformations (random position, scale and
rotation) over batches of training images; pasted on held-out images it pushes the model towards
its objective: a target class for classifiers; for detectors, objects vanish or `target_class`
appears.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, Field

import toolkit
from toolkit_plugins.augmentations import ordered_pair

if TYPE_CHECKING:
    from toolkit_plugins.attacks.patch_attack import PatchAttack


def patch(
    area: Annotated[
        float, Field(gt=0.0, le=0.5, description="the patch's area at scale 1, as a fraction of the image's")
    ] = 0.1,
    scale: Annotated[
        tuple[Annotated[float, Field(gt=0.0, le=1.0)], Annotated[float, Field(gt=0.0, le=1.0)]],
        AfterValidator(ordered_pair),
        Field(description="(min, max) random side scale (<= 1: the patch never covers more than `area`)"),
    ] = (0.8, 1.0),
    rotation: Annotated[
        float, Field(ge=0.0, le=180.0, description="largest random rotation, degrees")
    ] = 20.0,
    steps: Annotated[int, Field(ge=1, le=100_000, description="optimization steps (one batch each)")] = 300,
    lr: Annotated[float, Field(gt=0.0, le=10.0, description="Adam learning rate of the patch logits")] = 0.1,
    seed: Annotated[int, Field(ge=0, description="seed of the initial patch and of the placements")] = 0,
    objective: Annotated[
        str | None,
        Field(description="the task's objective (default: targeted with target_class, else the task's)"),
    ] = None,
    target_class: Annotated[str | None, Field(description="class to push towards (targeted, appear)")] = None,
) -> PatchAttack:
    """Adversarial patch: `fit` it on training batches, then paste it on images at random places."""
    from toolkit_plugins.attacks.patch_attack import PatchAttack

    return PatchAttack(
        area=area,
        scale=scale,
        rotation=rotation,
        steps=steps,
        lr=lr,
        seed=seed,
        objective=objective,
        target_class=target_class,
    )


@toolkit.hookimpl
def toolkit_register_attacks(registry: toolkit.Registry) -> None:
    registry.register("patch", patch)
