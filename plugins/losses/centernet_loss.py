"""CenterNet loss: penalty-reduced pixelwise focal loss on the heatmap, masked L1 on size and offset.

Formulas follow the CenterNet reference code (xingyizhou/CenterNet `models/losses.py`: `_neg_loss`,
`RegL1Loss`, `_transpose_and_gather_feat`; `models/utils.py` `_sigmoid`), with the conventions of
`CenterNetHead` and `CenterNetTargetEncoder`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import generalized_box_iou_loss

from toolkit.errors import ToolkitError
from toolkit_plugins.losses._keys import lookup

#: The reference `_sigmoid` clamps probabilities to [EPS, 1 - EPS] so that no log is infinite.
EPS = 1e-4
_LOG_LO = math.log(EPS)
_LOG_HI = math.log1p(-EPS)
_TARGET_FIX = "use the targets of the CenterNet head's target encoder"
_OUTPUT_FIX = "use the CenterNet head (outputs heatmap, size, offset)"


def heatmap_focal_loss(logits: Tensor, target: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """CornerNet/CenterNet focal loss of heatmap logits [N,C,h,w] against a target in [0, 1].

    With p = clamp(sigmoid(logit), 1e-4, 1 - 1e-4): positives (target == 1) cost
    -(1 - p)^alpha log p, the others -(1 - y)^beta p^alpha log(1 - p); the sum over the batch is
    divided by the number of positives, or not divided when there are none (as the reference).
    1 - p and both logs come from sigmoid(-x) and logsigmoid, clamped to the same bounds, so they
    carry no cancellation error; values equal the reference's up to float rounding. Computed in
    float32 or wider.
    """
    x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    y = target.to(x.dtype)
    p = torch.sigmoid(x).clamp(EPS, 1 - EPS)
    one_minus_p = torch.sigmoid(-x).clamp(EPS, 1 - EPS)
    log_p = F.logsigmoid(x).clamp(_LOG_LO, _LOG_HI)
    log_one_minus_p = F.logsigmoid(-x).clamp(_LOG_LO, _LOG_HI)
    positive = y.eq(1).to(x.dtype)
    negative = y.lt(1).to(x.dtype)
    pos_loss = (one_minus_p.pow(alpha) * log_p * positive).sum()
    neg_loss = ((1 - y).pow(beta) * p.pow(alpha) * log_one_minus_p * negative).sum()
    num_pos = positive.sum()
    # no positives: pos_loss is 0 and the reference returns -neg_loss; clamp avoids a host sync
    return -(pos_loss + neg_loss) / num_pos.clamp(min=1)


def gather_at(feature: Tensor, index: Tensor) -> Tensor:
    """Values of feature [N,K,h,w] at flat indices index [N,M] (y * w + x), as [N,M,K]."""
    n, k = feature.shape[:2]
    flat = feature.reshape(n, k, -1)
    return torch.gather(flat, 2, index.unsqueeze(1).expand(-1, k, -1)).transpose(1, 2)


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Reference `RegL1Loss` on gathered pred/target [N,M,K] and mask [N,M].

    sum |pred * mask - target * mask| / (mask_expanded.sum() + 1e-4), the mask expanded over the
    K channels: divided by K * (number of objects) + 1e-4, so with K = 2 the mean over objects and
    both channels (not over objects alone).
    """
    mask = mask.to(pred.dtype).unsqueeze(2).expand_as(pred)
    total = F.l1_loss(pred * mask, target.to(pred.dtype) * mask, reduction="sum")
    return total / (mask.sum() + 1e-4)


def centre_boxes(size: Tensor, offset: Tensor) -> Tensor:
    """Boxes [N,M,4] (x1, y1, x2, y2 in cells, relative to the peak cell) from (w, h) and (dx, dy) [N,M,2].

    Negative predicted sizes are clamped to 0, so a box is never inverted.
    """
    half = size.clamp(min=0) / 2
    return torch.cat([offset - half, offset + half], dim=-1)


def masked_giou(pred_size: Tensor, pred_offset: Tensor, size: Tensor, offset: Tensor, mask: Tensor) -> Tensor:
    """Mean over objects (`mask` [N,M]) of 1 - GIoU between the boxes the predicted and the target
    size/offset describe at each object's peak cell (torchvision.ops.generalized_box_iou_loss)."""
    pred = centre_boxes(pred_size, pred_offset)
    goal = centre_boxes(size.to(pred.dtype), offset.to(pred.dtype))
    losses = generalized_box_iou_loss(pred, goal, reduction="none", eps=1e-7)
    weights = mask.to(pred.dtype)
    return (losses * weights).sum() / (weights.sum() + 1e-4)


def dense_giou(size: Tensor, offset: Tensor, box: Tensor, weight: Tensor) -> Tensor:
    """Weighted mean of 1 - GIoU over the cells where `weight` [N,h,w] > 0 (TTFNet's box loss).

    The predicted box at cell (x, y) is centred at (x + dx, y + dy) with the size (w, h) predicted
    there (size, offset [N,2,h,w]); `box` [N,4,h,w] holds the target box in cells (absolute).
    Divided by the sum of the weights (+1e-4).
    """
    chosen = weight > 0
    if not bool(chosen.any()):
        return size.sum() * 0.0
    n, _, h, w = size.shape
    ys = torch.arange(h, device=size.device, dtype=size.dtype).view(1, h, 1).expand(n, h, w)
    xs = torch.arange(w, device=size.device, dtype=size.dtype).view(1, 1, w).expand(n, h, w)
    cell = torch.stack([xs[chosen], ys[chosen]], dim=-1)
    relative = centre_boxes(size.permute(0, 2, 3, 1)[chosen], offset.permute(0, 2, 3, 1)[chosen])
    pred = relative + cell.repeat(1, 2)
    goal = box.permute(0, 2, 3, 1)[chosen].to(pred.dtype)
    losses = generalized_box_iou_loss(pred, goal, reduction="none", eps=1e-7)
    weights = weight[chosen].to(pred.dtype)
    return (losses * weights).sum() / (weights.sum() + 1e-4)


class CenterNetLoss(nn.Module):
    """CenterNet loss on head outputs {"heatmap", "size", "offset"} and encoder targets.

    `forward` returns {"heatmap", "size", "offset"} each multiplied by its weight, and "loss", their
    sum; all scalar tensors. Size and offset are compared only at object centres (`index`, `mask`).
    With `giou_weight` > 0 a "giou" term is added: 1 - GIoU of the box the predicted size and offset
    make at each centre against the target box, averaged over objects (TTFNet-style box loss, which
    scores the box as a whole instead of its four numbers separately). When the targets carry dense
    box targets ("box", "box_weight": the head's `box_region` > 0) the term covers every cell of
    each object's region instead of its centre alone (`dense_giou`).
    """

    def __init__(
        self,
        *,
        heatmap_weight: float = 1.0,
        size_weight: float = 0.1,
        offset_weight: float = 1.0,
        giou_weight: float = 0.0,
        alpha: float = 2.0,
        beta: float = 4.0,
    ) -> None:
        super().__init__()
        self.giou_weight = giou_weight
        self.heatmap_weight = heatmap_weight
        self.size_weight = size_weight
        self.offset_weight = offset_weight
        self.alpha = alpha
        self.beta = beta

    def extra_repr(self) -> str:
        return (
            f"heatmap_weight={self.heatmap_weight}, size_weight={self.size_weight}, "
            f"offset_weight={self.offset_weight}, giou_weight={self.giou_weight}, alpha={self.alpha}, "
            f"beta={self.beta}"
        )

    def forward(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
        def output(key: str) -> Tensor:
            return lookup(outputs, key, loss="centernet", what="model outputs", fix=_OUTPUT_FIX)

        def target(key: str) -> Tensor:
            return lookup(targets, key, loss="centernet", what="targets", fix=_TARGET_FIX)

        logits, heatmap = output("heatmap"), target("heatmap")
        if logits.shape != heatmap.shape:
            raise ToolkitError(
                f"centernet loss: heatmap output has shape {tuple(logits.shape)} but the heatmap target "
                f"{tuple(heatmap.shape)}; the target encoder must use the head's num_classes and stride"
            )
        index, mask = target("index"), target("mask")
        terms = {"heatmap": self.heatmap_weight * heatmap_focal_loss(logits, heatmap, self.alpha, self.beta)}
        gathered: dict[str, tuple[Tensor, Tensor]] = {}
        for key, weight in (("size", self.size_weight), ("offset", self.offset_weight)):
            pred = gather_at(output(key), index)
            goal = target(key)
            if pred.shape != goal.shape:
                raise ToolkitError(
                    f"centernet loss: {key} output gathered at the {tuple(index.shape)} object slots has "
                    f"shape {tuple(pred.shape)} but the {key} target {tuple(goal.shape)}"
                )
            terms[key] = weight * masked_l1(pred, goal, mask)
            gathered[key] = (pred, goal)
        if self.giou_weight > 0 and "box_weight" in targets:
            dense = dense_giou(output("size"), output("offset"), target("box"), target("box_weight"))
            terms["giou"] = self.giou_weight * dense
        elif self.giou_weight > 0:
            (pred_size, size), (pred_offset, offset) = gathered["size"], gathered["offset"]
            terms["giou"] = self.giou_weight * masked_giou(pred_size, pred_offset, size, offset, mask)
        terms["loss"] = sum(terms.values())  # type: ignore[assignment]
        return terms
