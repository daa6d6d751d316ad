"""Classification losses (cross-entropy, sigmoid focal), registered without importing torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

import toolkit

if TYPE_CHECKING:
    from toolkit_plugins.losses.classification_losses import CrossEntropyLoss, SigmoidFocalLoss

ClassWeights = Annotated[
    list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None,
    Field(description="one weight per class, in class order (length = num_classes); none: all 1"),
]


def cross_entropy(
    num_classes: int,
    label_smoothing: Annotated[
        float, Field(ge=0, lt=1, description="mass spread uniformly over all classes")
    ] = 0.0,
    class_weights: ClassWeights = None,
) -> CrossEntropyLoss:
    """Softmax cross-entropy over the classes, optional label smoothing and class weights."""
    from toolkit_plugins.losses.classification_losses import CrossEntropyLoss

    return CrossEntropyLoss(num_classes, label_smoothing=label_smoothing, class_weights=class_weights)


def sigmoid_focal(
    alpha: Annotated[
        float, Field(ge=0, le=1, description="weight of the positive class; 1 - alpha for negatives")
    ] = 0.25,
    gamma: Annotated[float, Field(ge=0, allow_inf_nan=False, description="focusing exponent")] = 2.0,
) -> SigmoidFocalLoss:
    """Sigmoid focal loss (RetinaNet) on one-hot labels, summed over classes, mean over the batch."""
    from toolkit_plugins.losses.classification_losses import SigmoidFocalLoss

    return SigmoidFocalLoss(alpha=alpha, gamma=gamma)


@toolkit.hookimpl
def toolkit_register_losses(registry: toolkit.Registry) -> None:
    registry.register("cross_entropy", cross_entropy)
    registry.register("sigmoid_focal", sigmoid_focal)
