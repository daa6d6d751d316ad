"""Classification losses on outputs {"logits": [N, C]} and targets {"label": int64 [N]}."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from toolkit.errors import ToolkitError
from toolkit_plugins.losses._keys import lookup

_OUTPUT_FIX = "use a classification head (outputs logits [N, C])"
_TARGET_FIX = "use classification targets (label int64 [N])"


def _logits_and_labels(
    loss: str, outputs: dict[str, Tensor], targets: dict[str, Tensor]
) -> tuple[Tensor, Tensor]:
    logits = lookup(outputs, "logits", loss=loss, what="model outputs", fix=_OUTPUT_FIX)
    labels = lookup(targets, "label", loss=loss, what="targets", fix=_TARGET_FIX)
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ToolkitError(
            f"{loss} loss: expects logits [N, C] and label [N], got logits {tuple(logits.shape)} "
            f"and label {tuple(labels.shape)}"
        )
    return logits, labels.long()


class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy (`F.cross_entropy`: weighted mean over the batch, label smoothing).

    `class_weights`, one per class, rescale each sample's term; the mean divides by the sum of
    the weights of the samples' classes (PyTorch's convention). Returns {"cross_entropy", "loss"}.
    """

    def __init__(
        self, num_classes: int, *, label_smoothing: float = 0.0, class_weights: Sequence[float] | None = None
    ) -> None:
        super().__init__()
        if class_weights is not None and len(class_weights) != num_classes:
            raise ToolkitError(
                f"cross_entropy loss: class_weights has {len(class_weights)} values but the model has "
                f"{num_classes} classes; give exactly one weight per class, in class order "
                "(or remove class_weights)"
            )
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        weights = None if class_weights is None else torch.tensor(list(class_weights), dtype=torch.float32)
        self.class_weights: Tensor | None
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
        logits, labels = _logits_and_labels("cross_entropy", outputs, targets)
        if logits.shape[1] != self.num_classes:
            raise ToolkitError(
                f"cross_entropy loss: logits have {logits.shape[1]} classes but the loss was built for "
                f"{self.num_classes}"
            )
        weight = None if self.class_weights is None else self.class_weights.to(logits.dtype)
        value = F.cross_entropy(logits, labels, weight=weight, label_smoothing=self.label_smoothing)
        return {"cross_entropy": value, "loss": value}


class SigmoidFocalLoss(nn.Module):
    """Sigmoid focal loss (torchvision) of logits against one-hot labels, summed and divided by N.

    Returns {"focal", "loss"}; each class is an independent binary problem (RetinaNet).
    """

    def __init__(self, *, alpha: float = 0.25, gamma: float = 2.0) -> None:
        super().__init__()
        self.alpha = alpha
        self.gamma = gamma

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}"

    def forward(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
        logits, labels = _logits_and_labels("sigmoid_focal", outputs, targets)
        one_hot = torch.zeros_like(logits).scatter_(1, labels.unsqueeze(1), 1.0)
        total = sigmoid_focal_loss(logits, one_hot, alpha=self.alpha, gamma=self.gamma, reduction="sum")
        value = total / max(logits.shape[0], 1)
        return {"focal": value, "loss": value}
