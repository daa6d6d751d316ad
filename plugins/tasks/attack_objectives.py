"""Attack objectives the built-in tasks own: per-image losses [N] an attack drives up.

Classification (`logits` [N,C], targets `label` [N]):
- untargeted: cross-entropy of the true label (up: away from the truth);
- targeted: minus the cross-entropy of `target_class` (up: towards that class).

Detection, for heatmap detectors such as CenterNet (`heatmap` logits [N,C,h,w]; the encoded
targets' Gaussian `heatmap`, `index` and `mask` of the object centres):
- vanishing: minus the sum of softplus(logit) over every class and place, weighted by the
  ground-truth Gaussians (the objects' neighbourhoods; every place equally without targets):
  pushes the heatmap down at the objects, so they drop below the background and vanish;
- untargeted: the CenterNet focal loss against the ground truth (up: away from the truth);
- mislabel: at each object centre, the logit of `target_class` minus the largest other logit
  (up: the object reads as `target_class`);
- appear: the soft maximum (logsumexp) of `target_class`'s logits over the image (up: a
  `target_class` object appears somewhere, e.g. on a patch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from toolkit.errors import ToolkitError

CLASSIFICATION_OBJECTIVES = ("untargeted", "targeted")
DETECTION_OBJECTIVES = ("vanishing", "untargeted", "mislabel", "appear")


def _needs_target(objective: str, target_class: int | None) -> int:
    if target_class is None:
        raise ToolkitError(f"attack objective {objective!r} needs a target_class")
    return target_class


def _get(mapping: Mapping[str, Tensor], key: str, what: str, objective: str) -> Tensor:
    if key not in mapping:
        raise ToolkitError(
            f"attack objective {objective!r} needs {what} {key!r}; "
            f"the model gives {', '.join(mapping) or 'none'}"
        )
    return mapping[key]


def classification_attack_loss(
    outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor], *, objective: str, target_class: int | None
) -> Tensor:
    logits = _get(outputs, "logits", "the output", objective).float()
    if objective == "untargeted":
        return F.cross_entropy(
            logits, _get(targets, "label", "the target", objective).long(), reduction="none"
        )
    if objective == "targeted":
        goal = torch.full((logits.shape[0],), _needs_target(objective, target_class), device=logits.device)
        return -F.cross_entropy(logits, goal, reduction="none")
    raise ToolkitError(
        f"unknown classification attack objective {objective!r}: {', '.join(CLASSIFICATION_OBJECTIVES)}"
    )


def _centre_logits(logits: Tensor, index: Tensor) -> Tensor:
    """Logits [N,C,K] at the K object slots (flat positions `index` [N,K])."""
    n, c = logits.shape[:2]
    flat = logits.reshape(n, c, -1)
    return flat.gather(2, index.long().clamp(min=0, max=flat.shape[2] - 1).unsqueeze(1).expand(n, c, -1))


def detection_attack_loss(
    outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor], *, objective: str, target_class: int | None
) -> Tensor:
    logits = _get(outputs, "heatmap", "the output", objective).float()
    if objective == "vanishing":
        truth = targets.get("heatmap")
        weight = 1.0 if truth is None else truth.to(logits.dtype).amax(dim=1, keepdim=True)
        return -(F.softplus(logits) * weight).flatten(1).sum(1)
    if objective == "untargeted":
        from toolkit_plugins.losses.centernet_loss import heatmap_focal_loss

        truth = _get(targets, "heatmap", "the target", objective)
        return torch.stack(
            [heatmap_focal_loss(logits[i : i + 1], truth[i : i + 1]) for i in range(len(logits))]
        )
    if objective == "mislabel":
        goal = _needs_target(objective, target_class)
        index = _get(targets, "index", "the target", objective)
        mask = _get(targets, "mask", "the target", objective).to(logits.dtype)
        at_centres = _centre_logits(logits, index)  # [N,C,K]
        others = at_centres.clone()
        others[:, goal] = float("-inf")
        margin = at_centres[:, goal] - others.amax(dim=1)
        return (margin.clamp(max=5.0) * mask).sum(1)
    if objective == "appear":
        goal = _needs_target(objective, target_class)
        return torch.logsumexp(logits[:, goal].flatten(1), dim=1)
    raise ToolkitError(f"unknown detection attack objective {objective!r}: {', '.join(DETECTION_OBJECTIVES)}")


def classification_attack_success(
    clean: Sequence[Mapping[str, Any]],
    adversarial: Sequence[Mapping[str, Any]],
    targets: Mapping[str, Tensor],
    *,
    objective: str,
    target_class: int | None,
    score_threshold: float = 0.0,
) -> list[bool | None]:
    """Per image: untargeted, a correct prediction turned wrong; targeted, an image of another class
    now read as `target_class`. None: the image does not count (already wrong / already the target)."""
    truth = [int(v) for v in targets["label"].tolist()]
    flags: list[bool | None] = []
    for before, after, label in zip(clean, adversarial, truth, strict=True):
        if objective == "targeted":
            flags.append(None if label == target_class else int(after["label"]) == target_class)
        else:
            flags.append(None if int(before["label"]) != label else int(after["label"]) != label)
    return flags


def _found(result: Mapping[str, Any], threshold: float, label: int | None = None) -> bool:
    scores = torch.as_tensor(result["scores"])
    keep = scores >= threshold
    if label is not None:
        keep &= torch.as_tensor(result["labels"]) == label
    return bool(keep.any())


def detection_attack_success(
    clean: Sequence[Mapping[str, Any]],
    adversarial: Sequence[Mapping[str, Any]],
    targets: Mapping[str, Tensor],
    *,
    objective: str,
    target_class: int | None,
    score_threshold: float = 0.3,
) -> list[bool | None]:
    """Per image: vanishing/untargeted, every detection >= score_threshold gone (images with one
    counted); mislabel/appear, a `target_class` detection appears (images without one counted)."""
    flags: list[bool | None] = []
    for before, after in zip(clean, adversarial, strict=True):
        if objective in ("mislabel", "appear"):
            had = _found(before, score_threshold, target_class)
            flags.append(None if had else _found(after, score_threshold, target_class))
        else:
            had = _found(before, score_threshold)
            flags.append(not _found(after, score_threshold) if had else None)
    return flags
