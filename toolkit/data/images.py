"""Image decoding for datasets: `read_image(path)` -> uint8 RGB tensor [3,H,W], or BadSampleError.

The pixel count is checked from the header (PIL reads only the header on open) against PIL's
`Image.MAX_IMAGE_PIXELS` before anything is decoded; JPEG/PNG/WebP/GIF are decoded by torchvision,
other formats (BMP, TIFF, ...) by PIL. Every path applies the EXIF orientation (a photo taken
sideways is read upright, and `image_size` gives the upright size) and gives 8-bit RGB: grayscale,
RGBA, palette, CMYK and 16-bit images are converted (16-bit values scaled, not clipped).
`pil_to_tensor` does the same for a PIL image already open (`model.predict` takes those).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import BadSampleError

if TYPE_CHECKING:
    import torch

#: PIL formats that torchvision.io.decode_image decodes natively.
TORCHVISION_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF"})

_CPP_PREFIX = re.compile(r"^[\w:()]+, \S+:\d+, ")
_TORCHVISION_DEPRECATION = r"The image decoding and encoding capabilities of TorchVision are deprecated"


#: EXIF orientations (tag 0x0112) that turn the image by 90 degrees: width and height swap
_TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) upright (EXIF orientation applied) from the image header; BadSampleError for a
    missing, unreadable or huge image."""
    from PIL import Image

    size, _ = _probe(Path(path), Image.MAX_IMAGE_PIXELS)
    return size


def read_image(path: str | Path, *, max_pixels: int | None = None) -> torch.Tensor:
    """Decode `path` to a uint8 tensor [3,H,W] (RGB); grayscale, RGBA and palette images become RGB.

    Raises BadSampleError naming the file for a missing file, an image larger than `max_pixels`
    (default PIL.Image.MAX_IMAGE_PIXELS: a decompression bomb) or a truncated/corrupt image.
    """
    from PIL import Image

    path = Path(path)
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    _, image_format = _probe(path, limit)
    with _pil_pixel_limit(limit):
        if image_format in TORCHVISION_FORMATS:
            return _decode_torchvision(path)
        return _decode_pil(path)


def _probe(path: Path, limit: int | None) -> tuple[tuple[int, int], str]:
    """(upright size, PIL format) from the header; BadSampleError past `limit` pixels (None: no limit)."""
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        raise BadSampleError(
            str(path), "image file not found; check the path (a dataset: restore the file or drop its entry)"
        )
    if not path.is_file():
        raise BadSampleError(str(path), "not a regular file (a folder, FIFO or device); name an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _pil_pixel_limit(limit), Image.open(path) as image:
                size, image_format = image.size, str(image.format)
                # Pillow's TIFF reader reports (and loads) TIFFs upright itself
                if image_format != "TIFF" and _orientation(image) in _TRANSPOSED_ORIENTATIONS:
                    size = (size[1], size[0])
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
    if limit is not None and size[0] * size[1] > limit:
        raise BadSampleError(
            str(path),
            f"image of {size[0]}x{size[1]} = {size[0] * size[1]} pixels exceeds the limit of "
            f"{limit} pixels (a possible decompression bomb); {_BOMB_FIX}",
        )
    return size, image_format


_BOMB_FIX = "shrink the image or remove it (the limit is PIL.Image.MAX_IMAGE_PIXELS)"


@contextmanager
def _pil_pixel_limit(limit: int | None) -> Iterator[None]:
    """PIL's own bomb check (an error past twice MAX_IMAGE_PIXELS) at `limit` while a header is read."""
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


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
            image = decode_image(read_file(str(path)), mode=ImageReadMode.RGB, apply_exif_orientation=True)
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
    from PIL import Image

    try:
        with Image.open(path) as image:
            return pil_to_tensor(image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadSampleError(
            str(path), f"cannot decode the image, truncated or corrupt ({exc}); replace or remove the file"
        ) from None


def _orientation(image: Any) -> int:
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a damaged EXIF block: read the image as stored
        return 1


def pil_to_tensor(image: Any) -> torch.Tensor:
    """A PIL image as uint8 RGB [3,H,W]: EXIF orientation applied; 16- and 32-bit integer and float
    grayscale scaled to 8 bits (not clipped); every other mode (L, LA, P, RGBA, CMYK, ...) converted
    by PIL."""
    import numpy as np
    import torch
    from PIL import ImageOps

    if _orientation(image) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16"):
            top = 65535.0
        elif image.mode == "I":  # 32-bit integer: 16-bit PNG/TIFF data read by PIL, or wider
            top = 65535.0 if values.max(initial=0) <= 65535 else float(values.max())
        else:  # float: [0, 1] data, or any range
            top = 1.0 if values.max(initial=0) <= 1.0 else float(values.max())
        if not np.isfinite(values).all():
            raise ValueError(f"{image.mode} image holds values that are not finite")
        gray = np.clip(np.round(values * (255.0 / max(top, 1e-12))), 0, 255).astype(np.uint8)
        array = np.repeat(gray[:, :, None], 3, axis=2)
    else:
        array = np.asarray(image.convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
