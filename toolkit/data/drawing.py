"""Drawing on uint8 images, task-agnostic: labelled boxes and whole-image captions in per-class colours.

Tasks draw their results and targets with these; `toolkit data preview` draws its tiles with them.
Text uses matplotlib's DejaVu Sans (a toolkit dependency, so no font file is shipped here) at a
size that grows with the image; without it (or without FreeType in Pillow) PIL's default font.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.utils import draw_bounding_boxes

__all__ = ["PALETTE", "caption", "color", "draw_boxes", "font_size", "text_color"]

#: One colour per class, cycled (class id modulo its length).
PALETTE = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6"]

#: Box outline width in pixels.
LINE_WIDTH = 2


def color(class_id: int) -> str:
    """The palette colour of a class."""
    return PALETTE[int(class_id) % len(PALETTE)]


def text_color(class_id: int) -> str:
    """Black or white, whichever reads better on the class colour (labels sit on a filled box)."""
    red, green, blue = (int(color(class_id)[i : i + 2], 16) for i in (1, 3, 5))
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else "white"


def font_size(height: int, width: int, box_height: float | None = None) -> int:
    """Text height in pixels for an image of this size: 10 up to 250 pixels a side, then side / 25,
    but no taller than `box_height` (the typical box: a large image of small objects keeps labels
    the size of its objects), and never under 10."""
    size = min(int(height), int(width)) // 25
    if box_height is not None:
        size = min(size, int(box_height))
    return max(10, size)


def draw_boxes(
    image: torch.Tensor, boxes: torch.Tensor, texts: Sequence[str], class_ids: Sequence[int]
) -> torch.Tensor:
    """A copy of uint8 `image` [3,H,W] with xyxy `boxes` [k,4] (pixels) outlined and labelled.

    Box i is outlined in the colour of `class_ids[i]`, `texts[i]` at its top-left corner on a
    label box of that colour (plain coloured text on a torchvision without `fill_labels`). With
    k == 0 the copy is unchanged. Inputs may live on any device; the result is on the CPU.
    """
    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(
            f"draw_boxes expects a uint8 [3, H, W] image, got {image.dtype} {tuple(image.shape)}"
        )
    boxes = boxes.detach().cpu().reshape(-1, 4).to(torch.float32)
    if not len(boxes) == len(texts) == len(class_ids):
        raise ValueError(f"{len(boxes)} boxes, {len(texts)} texts and {len(class_ids)} class ids differ")
    image = image.detach().cpu()
    if not len(boxes):
        return image.clone()
    height, width = image.shape[-2:]
    font = _font_file()
    filled = (
        {"fill_labels": True, "label_colors": [text_color(c) for c in class_ids]} if _fills_labels() else {}
    )
    return draw_bounding_boxes(
        image,
        boxes,
        labels=list(texts),
        colors=[color(c) for c in class_ids],
        width=LINE_WIDTH,
        font=font,
        font_size=font_size(height, width, float((boxes[:, 3] - boxes[:, 1]).median()))
        if font is not None
        else None,
        **filled,
    )


def caption(image: torch.Tensor, text: str, class_id: int) -> torch.Tensor:
    """A copy of uint8 `image` [3,H,W] framed in the colour of `class_id`, `text` at the top left."""
    height, width = image.shape[-2:]
    frame = torch.tensor([[0.0, 0.0, width - 1.0, height - 1.0]])
    return draw_boxes(image, frame, [text], [class_id])


@functools.lru_cache(maxsize=1)
def _font_file() -> str | None:
    """matplotlib's DejaVu Sans TrueType file, or None (use PIL's default font) when unavailable."""
    try:
        import matplotlib
        from PIL import features

        if not features.check("freetype2"):
            return None
        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    except Exception:  # any failure means the default font, never a failed drawing
        return None
    return str(path) if path.is_file() else None


@functools.lru_cache(maxsize=1)
def _fills_labels() -> bool:
    """Whether this torchvision's draw_bounding_boxes can fill the label background."""
    return "fill_labels" in inspect.signature(draw_bounding_boxes).parameters
