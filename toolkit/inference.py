"""Prediction: images of any kind and size -> the model's own preprocessing -> per-image results.

`predict` and the evaluation loop share `predict_batch`: forward, decode, then the task's
`results` (original image pixels). `eval_mode` runs a model in eval mode and puts every submodule's
`training` flag back afterwards, so a prediction never changes BatchNorm statistics or modes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from toolkit.data.letterbox import LETTERBOX_KEY, Letterbox
from toolkit.errors import ToolkitError
from toolkit.predict_options import check_batch_size, check_score_threshold

if TYPE_CHECKING:
    from toolkit.model import ToolkitModel


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


def predict_batch(
    model: ToolkitModel,
    images: torch.Tensor,
    meta: Sequence[Mapping[str, Any]],
    *,
    score_threshold: float = 0.0,
) -> list[dict[str, Any]]:
    """Results of one preprocessed batch ([0, 1] images at the input size, with their meta)."""
    return batch_results(model, model.decode(model(images)), meta, score_threshold=score_threshold)


def batch_results(
    model: ToolkitModel,
    decoded: Mapping[str, torch.Tensor],
    meta: Sequence[Mapping[str, Any]],
    *,
    score_threshold: float = 0.0,
) -> list[dict[str, Any]]:
    """One result per image (original pixels) from a batch's decoded outputs (`model.decode`)."""
    return model.task.results(decoded, meta, model.input_size, model.class_names, score_threshold)


def as_image(item: Any, position: int) -> torch.Tensor:
    """One input as a [3,H,W] tensor: uint8 as given, floats checked to lie in [0, 1]."""
    if isinstance(item, (str, Path)):
        from toolkit.data.images import read_image

        return read_image(item)
    if not isinstance(item, torch.Tensor):
        from PIL import Image

        if isinstance(item, Image.Image):
            from toolkit.data.images import pil_to_tensor

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


def predict(
    model: ToolkitModel, images: Any, *, score_threshold: float = 0.0, batch_size: int = 16
) -> list[dict[str, Any]]:
    """Per-image results (the task's format, original image pixels) for any images.

    Runs under `torch.inference_mode()` in eval mode and leaves the module's modes and BatchNorm
    statistics as they were; each image is letterboxed alone, so an image gives the same result
    alone or in a batch of differently sized images.
    """
    check_batch_size(batch_size)
    score_threshold = check_score_threshold(score_threshold)
    items = image_list(images)
    device = model.input_mean.device
    results: list[dict[str, Any]] = []
    with eval_mode(model), torch.inference_mode():
        for start in range(0, len(items), batch_size):
            batch, meta = preprocess(items[start : start + batch_size], model.input_size)
            chunk = predict_batch(model, batch.to(device), meta, score_threshold=score_threshold)
            results.extend(chunk)
    return results
