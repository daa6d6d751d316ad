"""A third task, written from the contracts alone: object counting.

A head regresses the number of objects in an image from detection data; the task scores it by mean
absolute error (lower is better) and exact-count accuracy. Nothing outside this file knows it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import toolkit


class CountEncoder:
    """`encoder(labels) -> {"count": float32 scalar}`: the number of objects left after augmentation."""

    def __call__(self, labels: Any) -> dict[str, Any]:
        import torch

        return {"count": torch.tensor(float(len(labels)), dtype=torch.float32)}


class CountEvaluator:
    """Mean absolute error and exact-count accuracy over the predicted counts."""

    def __init__(self) -> None:
        self.errors: list[float] = []
        self.exact: list[bool] = []

    def update(
        self, results: Sequence[Mapping[str, Any]], targets: Mapping[str, Any], meta: Sequence
    ) -> None:
        for result, truth in zip(results, targets["count"].tolist(), strict=True):
            self.errors.append(abs(result["count"] - truth))
            self.exact.append(round(result["count"]) == round(truth))

    def compute(self, out_dir: Path | None = None) -> dict[str, Any]:
        count = max(len(self.errors), 1)
        return {"count_accuracy": sum(self.exact) / count, "MAE": sum(self.errors) / count}


class CountingTask:
    """How many objects are in the image?"""

    name = "counting"
    dataset_tasks = ("detection",)  # trains on box datasets: the count is the number of boxes
    metric_names = ("count_accuracy", "MAE")
    best_metric = "MAE"
    lower_is_better = ("MAE",)
    output_names = {"count": "[N] float32, predicted number of objects"}

    def prepare_target(self, target: Any) -> dict[str, Any]:
        return dict(target)

    def transforms_after(self) -> list[Any]:
        from torchvision.transforms import v2

        return [v2.SanitizeBoundingBoxes(min_size=1.0)]  # objects moved out of the image do not count

    def encode_target(self, target: Mapping[str, Any], encoder: Callable[..., Any]) -> dict[str, Any]:
        return encoder(target["labels"])

    def results(
        self,
        decoded: Mapping[str, Any],
        meta: Sequence[Mapping[str, Any]],
        input_size: tuple[int, int],
        class_names: Sequence[str],
        score_threshold: float = 0.0,
    ) -> list[dict[str, Any]]:
        return [{"count": float(value)} for value in decoded["count"].float().cpu().tolist()]

    def evaluator(self, dataset: Any, class_names: Sequence[str]) -> CountEvaluator:
        return CountEvaluator()

    def draw(self, image: Any, result: Mapping[str, Any], class_names: Sequence[str]) -> Any:
        return _caption(image, f"{result['count']:.1f} objects")

    def draw_target(self, image: Any, target: Mapping[str, Any], class_names: Sequence[str]) -> Any:
        return _caption(image, f"{len(target['labels'])} objects")


def _caption(image: Any, text: str) -> Any:
    import torch
    from torchvision.utils import draw_bounding_boxes

    height, width = image.shape[-2:]
    box = torch.tensor([[0.0, 0.0, width - 1.0, height - 1.0]])
    return draw_bounding_boxes(image, box, labels=[text], colors=["#3cb44b"], width=1)


def count_head(in_channels: int, num_classes: int) -> Any:
    """Global average pooling -> linear -> the number of objects (>= 0 after decoding)."""
    import torch
    from torch import nn

    class CountHead(nn.Module):
        task = "counting"
        default_loss = {"type": "l1", "output_key": "count", "target_key": "count"}

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(in_channels, 1)

        def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"count": self.fc(features.mean(dim=(2, 3))).squeeze(1)}

        def decode(self, outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {"count": outputs["count"].clamp(min=0)}

        def target_encoder(self, input_size: tuple[int, int]) -> CountEncoder:
            return CountEncoder()

    return CountHead()


def counting() -> CountingTask:
    """Object counting: regress the number of objects; MAE and exact-count accuracy."""
    return CountingTask()


@toolkit.hookimpl
def toolkit_register_tasks(registry: toolkit.Registry) -> None:
    registry.register("counting", counting)


@toolkit.hookimpl
def toolkit_register_heads(registry: toolkit.Registry) -> None:
    registry.register("count_head", count_head)


class CountedShapes:
    """`shapes` detection data that names the counting task as its own: a task with no
    `dataset_stats`, so `toolkit data stats` counts from the ground truth itself."""

    task = "counting"

    def __init__(self, length: int, image_size: int, seed: int) -> None:
        from toolkit_plugins.datasets.shapes_dataset import ShapesDataset

        self.shapes = ShapesDataset(length=length, image_size=image_size, seed=seed)
        self.class_names = self.shapes.class_names

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self.shapes[index]

    def ground_truth(self) -> dict[str, Any]:
        return self.shapes.ground_truth()


def counted_shapes(length: int = 8, image_size: int = 64, seed: int = 0) -> CountedShapes:
    """Shapes detection data read natively by the counting task."""
    return CountedShapes(length, image_size, seed)


@toolkit.hookimpl
def toolkit_register_datasets(registry: toolkit.Registry) -> None:
    registry.register("counted_shapes", counted_shapes)
