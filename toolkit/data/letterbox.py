"""Letterbox resize (aspect-preserving resize plus centred padding) and its inverse for boxes.

`Letterbox` resizes pixels with `torchvision.transforms.v2.functional.resize` and pads them with
`...functional.pad`. Boxes and keypoints are scaled by the one recorded `scale` (then shifted
with `functional.pad`), so `unletterbox_boxes` inverts them exactly; the pixels are scaled by
`round(W * scale) / W` and `round(H * scale) / H`, which differ from `scale` by less than half an
output pixel across the image.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

#: Target key of the record `[scale, pad_left, pad_top]` (float32) that Letterbox adds.
LETTERBOX_KEY = "letterbox"


class Letterbox(v2.Transform):
    """Resize to fit `size` (H, W) keeping the aspect ratio, centre it, pad the rest with `fill`.

    Called as `letterbox(image, target)`; every dict in the output (the target) gets
    `target["letterbox"] = tensor([scale, pad_left, pad_top])` such that original pixel
    coordinates are `x = (x' - pad_left) / scale`, `y = (y' - pad_top) / scale`. A record already
    present (an earlier letterbox) is composed with this one, so it always maps back to the
    image the dataset produced. `fill` is a pixel value in the image's own units (0..255 for
    uint8); masks are padded with 0. Boxes stay inside the image: nothing needs sanitizing.
    """

    needs_float = False

    def __init__(self, size: tuple[int, int], fill: float = 0.0) -> None:
        super().__init__()
        height, width = (int(v) for v in size)
        if height < 1 or width < 1:
            raise ValueError(f"Letterbox size must be positive (height, width), got {size}")
        self.size = (height, width)
        self.fill = fill

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return letterbox_params(_canvas_size(flat_inputs), self.size)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        padding = params["padding"]
        if params["scale"] == 1.0 and not any(padding):
            return inpt  # already the input size
        if isinstance(inpt, (tv_tensors.BoundingBoxes, tv_tensors.KeyPoints)):
            scaled = _scale_points(inpt, params["scale"], params["resized"])
            return F.pad(scaled, padding=padding)
        resized = self._call_kernel(F.resize, inpt, size=list(params["resized"]), antialias=True)
        fill = 0 if isinstance(inpt, tv_tensors.Mask) else self.fill
        return self._call_kernel(F.pad, resized, padding=padding, fill=fill)

    def forward(self, *inputs: Any) -> Any:
        """Apply the letterbox, then add (or compose) the inverse record in each output dict."""
        params = letterbox_params(_canvas_size(list(_leaves(inputs))), self.size)
        outputs = super().forward(*inputs)
        record = torch.tensor(
            [params["scale"], params["padding"][0], params["padding"][1]], dtype=torch.float32
        )
        for item in outputs if isinstance(outputs, tuple) else (outputs,):
            if isinstance(item, dict):
                previous = item.get(LETTERBOX_KEY)
                item[LETTERBOX_KEY] = record if previous is None else _compose(previous, record)
        return outputs


def letterbox_params(canvas: tuple[int, int], size: tuple[int, int]) -> dict[str, Any]:
    """Scale, resized (h, w) and padding [left, top, right, bottom] that letterbox `canvas` into `size`."""
    height, width = canvas
    out_h, out_w = size
    # Rounded to float32 once so that the boxes and the recorded scale use the very same number.
    scale = float(torch.tensor(min(out_h / height, out_w / width), dtype=torch.float32))
    new_h = min(out_h, max(1, round(height * scale)))
    new_w = min(out_w, max(1, round(width * scale)))
    left, top = (out_w - new_w) // 2, (out_h - new_h) // 2
    return {
        "scale": scale,
        "resized": (new_h, new_w),
        "padding": [left, top, out_w - new_w - left, out_h - new_h - top],
    }


def unletterbox_boxes(boxes: torch.Tensor, letterbox: torch.Tensor) -> torch.Tensor:
    """Map XYXY boxes from model-input pixels back to original image pixels.

    `boxes` [K, 4] with `letterbox` [3], or a batch [N, K, 4] with `letterbox` [N, 3] (rows
    `[scale, pad_left, pad_top]`). Returns a plain float tensor of the same shape; boxes are not
    clipped to the original image. Vectorised and traceable (no Python loops over boxes).
    """
    if boxes.shape[-1] != 4 or letterbox.shape[-1] != 3 or boxes.dim() != letterbox.dim() + 1:
        raise ValueError(
            "unletterbox_boxes expects boxes [K, 4] with letterbox [3] or boxes [N, K, 4] with "
            f"letterbox [N, 3]; got boxes {tuple(boxes.shape)} and letterbox {tuple(letterbox.shape)}"
        )
    boxes = boxes.as_subclass(torch.Tensor)
    dtype = boxes.dtype if boxes.is_floating_point() else torch.float32
    letterbox = letterbox.as_subclass(torch.Tensor).to(device=boxes.device, dtype=dtype)
    scale = letterbox[..., 0:1].unsqueeze(-1)  # [..., 1, 1]
    offset = letterbox[..., [1, 2, 1, 2]].unsqueeze(-2)  # [..., 1, 4]
    return (boxes.to(dtype) - offset) / scale


def _compose(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Record of letterbox `first` followed by `second`: x = (x'' - p2 - s2 * p1) / (s1 * s2)."""
    first = first.to(torch.float32)
    s1, s2 = first[0], second[0]
    return torch.stack([s1 * s2, second[1] + s2 * first[1], second[2] + s2 * first[2]])


def _scale_points(inpt: Any, scale: float, resized: tuple[int, int]) -> Any:
    """Boxes or keypoints scaled by `scale` about the origin, on a canvas of size `resized`."""
    data = inpt.as_subclass(torch.Tensor)
    data = data if data.is_floating_point() else data.to(torch.float32)
    if isinstance(inpt, tv_tensors.BoundingBoxes) and tv_tensors.is_rotated_bounding_format(inpt.format):
        corners = F.convert_bounding_box_format(
            data, old_format=inpt.format, new_format=tv_tensors.BoundingBoxFormat.XYXYXYXY
        )
        scaled = F.convert_bounding_box_format(
            corners * scale, old_format=tv_tensors.BoundingBoxFormat.XYXYXYXY, new_format=inpt.format
        )
    else:  # XYXY, XYWH and CXCYWH all scale coordinate by coordinate
        scaled = data * scale
    return tv_tensors.wrap(scaled, like=inpt, canvas_size=resized)


def _canvas_size(flat_inputs: list[Any]) -> tuple[int, int]:
    """(H, W) of the sample: from its image (or video), else from a mask, boxes or keypoints."""
    images = [x for x in flat_inputs if isinstance(x, (tv_tensors.Image, tv_tensors.Video))]
    others = [
        x
        for x in flat_inputs
        if isinstance(x, (tv_tensors.Mask, tv_tensors.BoundingBoxes, tv_tensors.KeyPoints))
    ]
    plain = [x for x in flat_inputs if type(x) is torch.Tensor and x.dim() >= 2]
    for candidate in (*images, *plain[:1], *others):
        height, width = F.get_size(candidate)
        return int(height), int(width)
    raise TypeError("Letterbox needs an image, video, mask or bounding boxes in the sample")


def _leaves(obj: Any) -> Iterator[Any]:
    """Leaves of nested tuples, lists and dicts, depth first (the order v2 flattens them in)."""
    if isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _leaves(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _leaves(item)
    else:
        yield obj
