"""A model's input: images of any kind and size -> the model's own preprocessing (letterbox to the
input size, float [0, 1]) with the meta that maps results back to original pixels.

`eval_mode` runs a model in eval mode and puts every submodule's `training` flag back afterwards,
so a prediction never changes BatchNorm statistics or modes. The torch model (`ToolkitModel.predict`)
and the onnxruntime model (`OnnxModel.predict`) both preprocess here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from toolkit.data.images import pil_to_tensor, read_image
from toolkit.data.letterbox import LETTERBOX_KEY, Letterbox
from toolkit.errors import ToolkitError


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
