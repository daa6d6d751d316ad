"""The model a spec describes: [0, 1] RGB images in, a backbone feeding a head, predictions out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from toolkit.contracts import Normalization, Task, UsesLevels
from toolkit.inference import PredictionPlan, eval_mode, image_list
from toolkit.predict_options import check_batch_size, check_score_threshold
from toolkit.spec.models import TileSpec
from toolkit.tiling import as_tiling


class ToolkitModel(nn.Module):
    """Backbone + head that owns its input contract.

    `forward(images)` takes float RGB images in [0, 1], [N,3,H,W] (H, W multiples of
    `input_multiple`), normalizes them (`normalization`, inside the model, so training, `predict`,
    export and attacks share one input) and returns the head's raw outputs; `decode` gives the
    head's predictions in model-input pixels; `predict` gives per-image results in original
    image pixels. `task` is the task object the head names.
    `category_ids` is the training dataset's own id of each label (e.g. COCO's), when a checkpoint
    recorded one, else None (results then use the labels 0..N-1).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        task: Task,
        *,
        class_names: Sequence[str],
        input_size: tuple[int, int],
        normalization: Normalization,
        input_multiple: int,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.task = task
        self.class_names = list(class_names)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.input_multiple = int(input_multiple)
        self.normalization = normalization
        self.category_ids: list[int] | None = None
        # not persistent: they come from the spec, and checkpoints stay loadable if it changes
        self.register_buffer(
            "input_mean", torch.tensor(normalization.mean).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("input_std", torch.tensor(normalization.std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(images - mean) / std per channel: [0, 1] RGB -> what the backbone expects."""
        return (images - self.input_mean) / self.input_std

    def features(self, normalized: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """What the head reads: the backbone's map, or all its levels when the head uses levels."""
        if isinstance(self.head, UsesLevels) and self.head.uses_levels:
            return list(self.backbone.forward_levels(normalized))
        return self.backbone(normalized)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw head outputs for [0, 1] RGB images [N,3,H,W]."""
        return self.head(self.features(self.normalize(images)))

    def decode(self, outputs: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The head's predictions (model-input pixels), traceable for export."""
        return self.head.decode(outputs)

    def results(
        self,
        decoded: Mapping[str, torch.Tensor],
        meta: Sequence[Mapping[str, Any]],
        score_threshold: float = 0.0,
    ) -> list[dict[str, Any]]:
        """One result per image (the task's format, original pixels) from a batch's decoded outputs."""
        return self.task.results(decoded, meta, self.input_size, self.class_names, score_threshold)

    def predict_batch(
        self, images: torch.Tensor, meta: Sequence[Mapping[str, Any]], *, score_threshold: float = 0.0
    ) -> list[dict[str, Any]]:
        """Results of one preprocessed batch ([0, 1] images at the input size, with their meta):
        forward, decode, then the task's `results`. Prediction and evaluation both go through it."""
        return self.results(self.decode(self(images)), meta, score_threshold)

    def predict(
        self,
        images: Any,
        *,
        score_threshold: float = 0.0,
        batch_size: int = 16,
        tile: TileSpec | Mapping[str, Any] | int | None = None,
    ) -> list[dict[str, Any]]:
        """Per-image results in original image pixels for a tensor batch, a list of tensors (uint8 or
        float in [0, 1], any sizes), PIL images or image paths.

        Runs under `torch.inference_mode()` in eval mode and leaves the module's modes and BatchNorm
        statistics as they were; each image is letterboxed alone, so an image gives the same result
        alone or in a batch of differently sized images. `tile` (a tile side in pixels, a
        `TileSpec` or its fields) slices each image into overlapping tiles run `tile.batch` at a
        time and merged back (`toolkit.tiling`: large images with small objects).
        """
        check_batch_size(batch_size)
        score_threshold = check_score_threshold(score_threshold)
        tiling = as_tiling(tile)
        device = self.input_mean.device
        plan = PredictionPlan(
            image_list(images), self.input_size, batch_size=batch_size, tiling=tiling, task=self.task
        )
        with eval_mode(self), torch.inference_mode():
            for batch, meta in plan.batches():
                plan.add(self.predict_batch(batch.to(device), meta, score_threshold=score_threshold))
        return plan.results

    def extra_repr(self) -> str:
        return f"task={self.task.name}, classes={len(self.class_names)}, input_size={self.input_size}"
