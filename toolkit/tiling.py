"""Sliced inference, the plan: which tiling a command runs with, and where the tiles go.

`tile_grid` places windows of the tile size so that they cover the image with at least the asked
overlap, the last row and column flush with the image's edges (an image smaller than a tile is one
window, the whole image). `as_tiling`, `spec_tiling` and `resolve_tiling` turn an API argument, a
spec's `predict.tile` and command-line flags into one `TileSpec`. Cutting and batching the tiles is
`toolkit.inference.tile_batches`. Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from toolkit.errors import ToolkitError, validation_problems
from toolkit.spec.models import Spec, TileSpec

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels


def as_tiling(tile: TileSpec | Mapping[str, Any] | int | None) -> TileSpec | None:
    """`tile` as a TileSpec: None (no tiling), a tile side in pixels, a mapping of TileSpec fields, or
    a TileSpec; a ToolkitError names what is wrong."""
    if tile is None or isinstance(tile, TileSpec):
        return tile
    if isinstance(tile, bool) or not isinstance(tile, (int, Mapping)):
        raise ToolkitError(
            f"tile must be a tile size in pixels, a mapping of tile options or None, not {tile!r}"
        )
    try:
        return TileSpec(size=tile) if isinstance(tile, int) else TileSpec(**tile)
    except ValidationError as exc:
        raise ToolkitError(f"tile: {validation_problems(exc)}") from None


def tile_origins(length: int, tile: int, overlap: float) -> list[int]:
    """Starts of windows of `tile` pixels along a side of `length`: a step of at most
    `tile * (1 - overlap)`, spread evenly so that the last window ends at the edge."""
    if length <= tile:
        return [0]
    step = max(1.0, tile * (1.0 - overlap))
    count = 1 + -int(-(length - tile) // step)  # ceil: enough windows for the step
    span = length - tile
    return [round(index * span / (count - 1)) for index in range(count)]


def tile_grid(height: int, width: int, tile: tuple[int, int], overlap: float) -> list[Window]:
    """Windows (x0, y0, x1, y1) of `tile` (H, W) covering an image, row by row; clipped to an image
    smaller than a tile."""
    rows = tile_origins(height, tile[0], overlap)
    columns = tile_origins(width, tile[1], overlap)
    return [(x0, y0, min(x0 + tile[1], width), min(y0 + tile[0], height)) for y0 in rows for x0 in columns]


def tile_size(tiling: TileSpec, input_size: tuple[int, int]) -> tuple[int, int]:
    """The (H, W) of a tile: `tiling.size` square, or the model's input size."""
    return (tiling.size, tiling.size) if tiling.size is not None else input_size


#: the flags of `toolkit predict` and `toolkit eval` that set TileSpec fields (flag name: field)
TILE_FLAGS = {
    "tile": "size",
    "overlap": "overlap",
    "full_image": "full_image",
    "merge": "merge",
    "merge_iou": "iou",
}


def spec_tiling(spec: Spec | Mapping[str, Any] | None) -> TileSpec | None:
    """The `predict.tile` section of a spec (a checkpoint's `Spec`, or an ONNX file's spec mapping),
    or None."""
    if isinstance(spec, Spec):
        return spec.predict.tile if spec.predict is not None else None
    section = ((spec or {}).get("predict") or {}).get("tile")
    return as_tiling(section) if section is not None else None


def resolve_tiling(
    spec_tile: TileSpec | None, flags: Mapping[str, Any], *, batch: int | None = None, off: bool = False
) -> TileSpec | None:
    """The tiling a command runs with: the spec's `predict.tile`, then the command-line `flags`
    (TILE_FLAGS names; None = not given) and `batch` over it; `--tile SIZE` turns tiling on, `off`
    (--no-tile) turns it off. Tile options without tiling are a ToolkitError."""
    given = [flag for flag in TILE_FLAGS if flags.get(flag) is not None]
    shown = ", ".join(f"--{flag.replace('_', '-')}" for flag in given)
    if off:
        if given:
            raise ToolkitError(f"--no-tile turns tiling off, but {shown} was given too: choose one")
        return None
    if spec_tile is None and "tile" not in given:
        if given:
            raise ToolkitError(
                f"{shown}: tiling options, but nothing tiles; add --tile SIZE (or predict.tile)"
            )
        return None
    fields = spec_tile.model_dump() if spec_tile is not None else {}
    fields.update({TILE_FLAGS[flag]: flags[flag] for flag in given})
    if batch is not None:
        fields["batch"] = batch
    return as_tiling(fields)
