"""Image decoding for datasets: `read_image(path)` -> uint8 RGB tensor [3,H,W], or BadSampleError.

The pixel count is checked from the header (PIL reads only the header on open) against PIL's
`Image.MAX_IMAGE_PIXELS` before anything is decoded; JPEG/PNG/WebP/GIF are decoded by torchvision,
other formats (BMP, TIFF, ...) by PIL.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.errors import BadSampleError

if TYPE_CHECKING:
    import torch

#: PIL formats that torchvision.io.decode_image decodes natively.
TORCHVISION_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF"})

_CPP_PREFIX = re.compile(r"^[\w:()]+, \S+:\d+, ")
_TORCHVISION_DEPRECATION = r"The image decoding and encoding capabilities of TorchVision are deprecated"


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the image header; BadSampleError for a missing, unreadable or huge image."""
    size, _ = _probe(Path(path))
    return size


def read_image(path: str | Path) -> torch.Tensor:
    """Decode `path` to a uint8 tensor [3,H,W] (RGB); grayscale, RGBA and palette images become RGB.

    Raises BadSampleError naming the file for a missing file, an image larger than
    PIL.Image.MAX_IMAGE_PIXELS (a decompression bomb) or a truncated/corrupt image.
    """
    path = Path(path)
    _, image_format = _probe(path)
    if image_format in TORCHVISION_FORMATS:
        return _decode_torchvision(path)
    return _decode_pil(path)


def _probe(path: Path) -> tuple[tuple[int, int], str]:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise BadSampleError(
            str(path), "image file not found; restore it or remove its entry from the annotations"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                size, image_format = image.size, str(image.format)
    except Image.DecompressionBombError as exc:
        raise BadSampleError(str(path), f"{_bomb_reason(exc)}; {_BOMB_FIX}") from None
    except UnidentifiedImageError:
        raise BadSampleError(
            str(path), "not a readable image (unknown format or corrupt); replace or remove the file"
        ) from None
    except OSError as exc:
        raise BadSampleError(
            str(path), f"cannot read the image, truncated or corrupt ({exc}); replace or remove the file"
        ) from None
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and size[0] * size[1] > limit:
        raise BadSampleError(
            str(path),
            f"image of {size[0]}x{size[1]} = {size[0] * size[1]} pixels exceeds the limit of "
            f"{limit} pixels (a possible decompression bomb); {_BOMB_FIX}",
        )
    return size, image_format


_BOMB_FIX = "shrink the image or remove it (the limit is PIL.Image.MAX_IMAGE_PIXELS)"


def _bomb_reason(exc: Exception) -> str:
    match = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = f"{match.group(1)} pixels" if match else "too many pixels"
    return f"image of {pixels} exceeds the pixel limit (a possible decompression bomb)"


def _decode_torchvision(path: Path) -> torch.Tensor:
    import torch

    try:
        from torchvision.io import ImageReadMode, decode_image, read_file
    except ImportError:  # decoding is deprecated in torchvision 0.29 (moving to torchcodec)
        return _decode_pil(path)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_TORCHVISION_DEPRECATION, category=DeprecationWarning)
            image = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    except RuntimeError as exc:
        reason = _CPP_PREFIX.sub("", str(exc)).strip()
        raise BadSampleError(
            str(path), f"cannot decode the image, truncated or corrupt ({reason}); replace or remove the file"
        ) from None
    if image.ndim == 4:  # an animated GIF: its first frame
        image = image[0]
    if image.dtype != torch.uint8:  # 16-bit PNG
        image = (image.to(torch.float32) * (255.0 / 65535.0)).round().to(torch.uint8)
    return image.contiguous()


def _decode_pil(path: Path) -> torch.Tensor:
    import numpy as np
    import torch
    from PIL import Image

    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadSampleError(
            str(path), f"cannot decode the image, truncated or corrupt ({exc}); replace or remove the file"
        ) from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
