"""A model's input: images of any kind and size -> the model's own preprocessing (letterbox to the
input size, float [0, 1]) with the meta that maps results back to original pixels.

`eval_mode` runs a model in eval mode and puts every submodule's `training` flag back afterwards,
so a prediction never changes BatchNorm statistics or modes. The torch model (`ToolkitModel.predict`)
and the onnxruntime model (`OnnxModel.predict`) both take their batches from here: whole images
(`image_batches`) or tiles (`tile_batches`), through one `PredictionPlan`.

Sliced inference (`tile_batches`) streams one image's windows (`toolkit.tiling.tile_grid`)
`tiling.batch` at a time: each window is a view of the image until its batch is letterboxed to the
model's input size, so memory holds the image, one batch and the detections, never all tiles. The
windows' results (the task's format, window pixels) and their origins go to the task's
`merge_tiles` (`contracts.MergesTiles`), which shifts them to image pixels and merges what tile
borders cut or doubled.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from toolkit.contracts import MergesTiles, Task
from toolkit.data.images import pil_to_tensor, read_image
from toolkit.data.letterbox import LETTERBOX_KEY, Letterbox
from toolkit.errors import ToolkitError
from toolkit.spec.models import TileSpec
from toolkit.tiling import tile_grid, tile_size


def model_preprocessing(input_size: tuple[int, int]) -> list[Any]:
    """The model's own evaluation preprocessing: letterbox to the input size (fill 0), then float [0, 1]."""
    return [Letterbox(input_size, fill=0.0), v2.ToDtype(torch.float32, scale=True)]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` in eval mode; restore each submodule's own `training` flag on exit."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


def as_image(item: Any, position: int) -> torch.Tensor:
    """One input as a [3,H,W] tensor: uint8 as given, floats checked to lie in [0, 1]."""
    if isinstance(item, (str, Path)):
        return read_image(item)
    if not isinstance(item, torch.Tensor):
        from PIL import Image

        if isinstance(item, Image.Image):
            try:
                return pil_to_tensor(item)
            except (OSError, ValueError) as exc:
                raise ToolkitError(f"predict: PIL image {position} cannot be made RGB: {exc}") from None
        raise ToolkitError(
            f"predict: image {position} is a {type(item).__name__}; pass tensors [3,H,W], PIL images "
            "or image file paths"
        )
    image = item.detach()
    if image.dim() == 2:
        image = image.unsqueeze(0)
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ToolkitError(
            f"predict: image {position} has shape {tuple(image.shape)}; expected [3,H,W] (RGB) or [1,H,W]"
        )
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    if image.is_floating_point():
        if not bool(torch.isfinite(image).all()):
            raise ToolkitError(
                f"predict: float image {position} holds NaN or infinite values; float images must lie "
                "in [0, 1]"
            )
        low, high = float(image.min()), float(image.max())
        if low < 0.0 or high > 1.0:
            raise ToolkitError(
                f"predict: float image {position} holds values in [{low:.3g}, {high:.3g}]; float images "
                "must lie in [0, 1] (pass uint8 images, or divide by 255)"
            )
    elif image.dtype != torch.uint8:
        raise ToolkitError(f"predict: image {position} has dtype {image.dtype}; use uint8 or float in [0, 1]")
    if image.shape[-1] < 1 or image.shape[-2] < 1:
        raise ToolkitError(f"predict: image {position} is empty ({tuple(image.shape)})")
    return image


def image_list(images: Any) -> list[torch.Tensor]:
    """A batch tensor [N,3,H,W], one image or a sequence of images -> a list of [3,H,W] tensors."""
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return [as_image(image, i) for i, image in enumerate(images)]
    if isinstance(images, (torch.Tensor, str, Path)) or not isinstance(images, Sequence):
        return [as_image(images, 0)]
    return [as_image(image, i) for i, image in enumerate(images)]


def preprocess(
    images: Sequence[torch.Tensor], input_size: tuple[int, int]
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Letterbox each image to `input_size`: the batch [N,3,H,W] in [0, 1] and each image's meta."""
    steps = v2.Compose(model_preprocessing(input_size))
    batch, meta = [], []
    for index, image in enumerate(images):
        height, width = image.shape[-2:]
        out, record = steps(tv_tensors.Image(image), {})
        batch.append(out.as_subclass(torch.Tensor))
        meta.append(
            {
                "index": index,
                "image_id": index,
                "orig_size": torch.tensor([height, width]),
                LETTERBOX_KEY: record[LETTERBOX_KEY],
            }
        )
    return torch.stack(batch), meta


def image_batches(
    images: Sequence[torch.Tensor], input_size: tuple[int, int], batch_size: int
) -> Iterator[tuple[torch.Tensor, list[dict[str, Any]]]]:
    """Whole images letterboxed to `input_size`, `batch_size` at a time: (batch, meta) pairs."""
    for start in range(0, len(images), batch_size):
        yield preprocess(images[start : start + batch_size], input_size)


def tile_batches(
    image: torch.Tensor, input_size: tuple[int, int], tiling: TileSpec, task: Task
) -> Iterator[tuple[torch.Tensor, list[dict[str, Any]], list[tuple[int, int]]]]:
    """One image's windows (`tile_grid`), `tiling.batch` at a time, letterboxed to `input_size`:
    (batch, meta in window pixels, window origins); then, with `tiling.full_image`, the whole image
    (origin (0, 0)). A task that cannot merge tiles is refused before any work."""
    if not isinstance(task, MergesTiles):
        raise ToolkitError(
            f"sliced inference needs a task that merges tile results (toolkit.contracts.MergesTiles); "
            f"task {task.name!r} does not: predict without --tile"
        )
    height, width = image.shape[-2:]
    windows = tile_grid(height, width, tile_size(tiling, input_size), tiling.overlap)
    for start in range(0, len(windows), tiling.batch):
        group = windows[start : start + tiling.batch]
        batch, meta = preprocess([image[:, y0:y1, x0:x1] for x0, y0, x1, y1 in group], input_size)
        yield batch, meta, [(x0, y0) for x0, y0, _, _ in group]
    if tiling.full_image and len(windows) > 1:
        batch, meta = preprocess([image], input_size)
        yield batch, meta, [(0, 0)]


def merge_tiles(
    task: Task, parts: Sequence[Mapping[str, Any]], origins: Sequence[tuple[int, int]], tiling: TileSpec
) -> dict[str, Any]:
    """One image's result in its own pixels from its windows' results (`tile_batches` order)."""
    assert isinstance(task, MergesTiles)  # tile_batches refused any other
    return task.merge_tiles(parts, origins, method=tiling.merge, iou=tiling.iou)


class PredictionPlan:
    """The batches `predict` runs for `images`, and their per-image results put back together:
    whole images `batch_size` at a time, or (with `tiling`) each image's tiles, merged per image.

    The caller runs each batch from `batches()` and hands its per-image results (the task's format)
    to `add` before asking for the next batch; `results` then holds one result per image, in order.
    """

    def __init__(
        self,
        images: Sequence[torch.Tensor],
        input_size: tuple[int, int],
        *,
        batch_size: int,
        tiling: TileSpec | None,
        task: Task,
    ) -> None:
        self.images, self.input_size, self.batch_size = images, input_size, batch_size
        self.tiling, self.task = tiling, task
        self.results: list[dict[str, Any]] = []
        self._parts: list[dict[str, Any]] = []

    def batches(self) -> Iterator[tuple[torch.Tensor, list[dict[str, Any]]]]:
        """Preprocessed (batch, meta) pairs; an image's tiles are merged once its last batch's results
        have been added."""
        if self.tiling is None:
            yield from image_batches(self.images, self.input_size, self.batch_size)
            return
        for image in self.images:
            origins: list[tuple[int, int]] = []
            for batch, meta, where in tile_batches(image, self.input_size, self.tiling, self.task):
                origins += where
                yield batch, meta
            self.results.append(merge_tiles(self.task, self._parts, origins, self.tiling))
            self._parts = []

    def add(self, results: list[dict[str, Any]]) -> None:
        """The per-image results of the batch `batches()` gave last."""
        (self.results if self.tiling is None else self._parts).extend(results)
