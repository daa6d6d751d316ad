"""CenterNet training targets: class-wise gaussian heatmaps plus size/offset/index/mask per object.

Formulas follow the CenterNet reference code (xingyizhou/CenterNet: `utils/image.py`
`gaussian_radius`, `gaussian2D`, `draw_umich_gaussian`, and the ctdet dataset's targets).
Conventions are those of `CenterNetHead` (see its docstring): size = (w, h) in output-stride
cells, offset = centre - floor(centre) in cells, index = y * W_out + x.

Two deliberate differences from the reference code, both about bookkeeping, not formulas:
- boxes are clipped to [0, W_out] x [0, H_out] cells (the reference clips to W_out - 1), so
  that `CenterNetHead.decode`, which clamps to [0, W_in] x [0, H_in] pixels, inverts the
  encoding for boxes that touch the right or bottom border;
- objects without a target (non-positive width or height after clipping) take no slot: the
  valid objects fill slots 0..n-1 in input order, and `max_objects` caps valid objects only
  (the reference truncates the raw annotations first and leaves a masked hole per skipped one).

The per-object loop transcription of the reference (the tests' oracle and the benchmark's
baseline) lives in tests/centernet_reference.py.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

_EPS64 = float(np.finfo(np.float64).eps)  # gaussian2D's cut-off, relative to the peak (1.0)
_ZERO32 = np.float32(0.0)
_HALF32 = np.float32(0.5)


def _gaussian_radius_np(height: np.ndarray, width: np.ndarray, min_overlap: float) -> np.ndarray:
    """The reference `gaussian_radius` on float64 numpy arrays [M]: the min of three quadratic roots.

    The three roots are computed as one [3, M] array, with the reference's IEEE operations in the
    same order: each root's products keep it, e.g. c1 = (w * h) * (1 - o) / (1 + o) but
    c2 = ((1 - o) * w) * h, and 4 * a * c = (4 * a) * c. Keeps the reference's quirk of dividing
    each root by 2 rather than 2a (tests/centernet_reference.py holds the scalar original).
    """
    o = min_overlap
    c1 = width * height * (1 - o) / (1 + o)
    c23 = np.array([[1 - o], [o - 1]]) * width * height
    c = np.concatenate([c1[None], c23])
    b = np.array([[1.0], [2.0], [-2 * o]]) * (height + width)  # b1 = 1 * (h + w): exact
    four_a = np.array([[4 * 1.0], [4 * 4.0], [4 * (4 * o)]])
    roots = (b + np.sqrt(b * b - four_a * c)) / 2
    return roots.min(axis=0)


def _as_array(value: object, dtype: torch.dtype) -> np.ndarray:
    """`value` as a CPU numpy array of `dtype` (detached), skipping the torch ops that would be no-ops.

    The result may share memory with `value`: read it, never write into it.
    """
    if type(value) is not torch.Tensor:
        value = value.as_subclass(torch.Tensor) if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    if value.requires_grad:
        value = value.detach()
    if value.dtype != dtype or value.device.type != "cpu":
        value = value.to(device="cpu", dtype=dtype)
    return value.numpy()


class CenterNetTargetEncoder:
    """`encoder(boxes[M, 4] xyxy input pixels, labels[M] int64) -> dict` of CenterNet targets.

    Returns "heatmap" float32 [C, H_out, W_out], "size" float32 [max_objects, 2] (w, h cells),
    "offset" float32 [max_objects, 2] (dx, dy), "index" int64 [max_objects] (y * W_out + x) and
    "mask" float32 [max_objects] (1 for a real object), with H_out = H / output_stride.
    With `box_region` > 0 also "box" float32 [4, H_out, W_out] and "box_weight" float32
    [H_out, W_out] (see `dense_box_targets`).
    More than `max_objects` valid objects: the first `max_objects` are kept, a warning names the
    number dropped, and `overflow_count` (per process: each DataLoader worker has its copy)
    accumulates it. Plain attributes only, so it pickles into DataLoader workers.

    Computed with numpy, vectorized over objects: the arrays are small (one row per object, one
    entry per gaussian cell), so numpy's ~1 us per operation beats torch's ~10 us dispatch.
    """

    def __init__(
        self,
        num_classes: int,
        output_stride: int,
        input_size: tuple[int, int],
        max_objects: int = 128,
        min_overlap: float = 0.7,
        box_region: float = 0.0,
    ) -> None:
        height, width = (int(v) for v in input_size)
        if num_classes < 1 or output_stride < 1 or max_objects < 1:
            raise ValueError(
                f"CenterNetTargetEncoder: num_classes ({num_classes}), output_stride ({output_stride}) "
                f"and max_objects ({max_objects}) must be >= 1"
            )
        if height % output_stride or width % output_stride or height < 1 or width < 1:
            raise ValueError(
                f"CenterNetTargetEncoder: input size (H, W) = {(height, width)} must be positive "
                f"multiples of the output stride {output_stride}; resize the input accordingly"
            )
        if not 0 < min_overlap < 1:
            raise ValueError(f"CenterNetTargetEncoder: min_overlap must be in (0, 1), got {min_overlap}")
        if not 0 <= box_region <= 1:
            raise ValueError(f"CenterNetTargetEncoder: box_region must be in [0, 1], got {box_region}")
        self.box_region = float(box_region)
        self.num_classes = int(num_classes)
        self.output_stride = int(output_stride)
        self.input_size = (height, width)
        self.output_size = (height // output_stride, width // output_stride)
        self.max_objects = int(max_objects)
        self.min_overlap = float(min_overlap)
        self.overflow_count = 0

    def __repr__(self) -> str:
        return (
            f"CenterNetTargetEncoder(num_classes={self.num_classes}, output_stride={self.output_stride}, "
            f"input_size={self.input_size}, max_objects={self.max_objects}, "
            f"min_overlap={self.min_overlap}, box_region={self.box_region})"
        )

    def __call__(self, boxes: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        boxes_np = _as_array(boxes, torch.float32).reshape(-1, 4)
        labels_np = _as_array(labels, torch.int64).reshape(-1)
        _check_labels(boxes_np.shape[0], labels_np, self.num_classes)
        h_out, w_out = self.output_size
        max_objects = self.max_objects

        # float32 throughout, as the reference: cells clipped to the output map (x1, y1, x2, y2).
        limits = np.array([w_out, h_out, w_out, h_out], dtype=np.float32)
        cells = np.minimum(np.maximum(boxes_np / np.float32(self.output_stride), _ZERO32), limits)
        sizes = cells[:, 2:] - cells[:, :2]  # (w, h); x2 - x1 > 0 iff x2 > x1; NaN: no target
        keep = np.flatnonzero(np.minimum(sizes[:, 0], sizes[:, 1]) > 0)
        n = keep.size
        if n > max_objects:
            dropped = n - max_objects
            self.overflow_count += dropped
            warnings.warn(
                f"CenterNetTargetEncoder: {n} objects exceed max_objects={max_objects}; "
                f"dropped the last {dropped} (raise the head's max_objects)",
                RuntimeWarning,
                stacklevel=2,
            )
            n = max_objects
            keep = keep[:n]

        size = np.zeros((max_objects, 2), dtype=np.float32)
        offset = np.zeros((max_objects, 2), dtype=np.float32)
        index = np.zeros(max_objects, dtype=np.int64)
        mask = np.zeros(max_objects, dtype=np.float32)
        if n == 0:
            heatmap = np.zeros((self.num_classes, h_out, w_out), dtype=np.float32)
        else:
            if n < labels_np.size:  # else every object is kept: no gather
                cells, sizes, labels_np = cells[keep], sizes[keep], labels_np[keep]
            centre = (cells[:, :2] + cells[:, 2:]) * _HALF32  # == / 2, exactly
            centre_floor = np.floor(centre)  # centre >= 0: floor == the reference's int() truncation
            centre_int = centre_floor.astype(np.int64)
            ceil_wh = np.ceil(sizes).astype(np.float64)
            radius = _gaussian_radius_np(ceil_wh[:, 1], ceil_wh[:, 0], self.min_overlap)
            radius = np.maximum(radius.astype(np.int64), 0)  # int(): truncation toward zero
            cx, cy = centre_int[:, 0], centre_int[:, 1]
            heatmap = _draw_gaussians(self.num_classes, h_out, w_out, cx, cy, radius, labels_np)
            size[:n] = sizes
            np.subtract(centre, centre_floor, out=offset[:n])
            index[:n] = cy * w_out + cx
            mask[:n] = 1.0
        dense: dict[str, torch.Tensor] = {}
        if self.box_region > 0:  # the kept objects' cells (their first n rows; none when n == 0)
            box, weight = dense_box_targets(cells[:n], h_out, w_out, self.box_region, self.output_stride)
            dense = {"box": torch.from_numpy(box), "box_weight": torch.from_numpy(weight)}
        return {
            "heatmap": torch.from_numpy(heatmap),
            "size": torch.from_numpy(size),
            "offset": torch.from_numpy(offset),
            "index": torch.from_numpy(index),
            "mask": torch.from_numpy(mask),
            **dense,
        }


def dense_box_targets(
    cells: np.ndarray, h_out: int, w_out: int, region: float, stride: int
) -> tuple[np.ndarray, np.ndarray]:
    """TTFNet's dense box targets: each object's box at every cell of a gaussian region around its centre.

    `cells`: [M, 4] float32 boxes (x1, y1, x2, y2) in output cells, all of positive size. Object m
    covers the cells within (region * w / 2, region * h / 2) of its centre cell, weighted by an
    elliptical gaussian (sigma = window side / 6, as the heatmap's) normalised to sum to
    log(area in input pixels), so that a large object counts somewhat more than a small one but
    not in proportion to its cells. Larger objects are drawn first: where regions overlap, the
    smaller object's box and weight win. Returns "box" [4, H_out, W_out] (cells, absolute) and
    "weight" [H_out, W_out], 0 where no object's region reaches.
    """
    box = np.zeros((4, h_out, w_out), dtype=np.float32)
    weight = np.zeros((h_out, w_out), dtype=np.float32)
    sizes = cells[:, 2:] - cells[:, :2]
    areas = sizes[:, 0] * sizes[:, 1]
    centres = np.floor((cells[:, :2] + cells[:, 2:]) * _HALF32).astype(np.int64)
    for m in np.argsort(-areas, kind="stable"):
        cx, cy = (min(int(v), limit - 1) for v, limit in zip(centres[m], (w_out, h_out), strict=True))
        rx, ry = (int(region * float(side) / 2) for side in sizes[m])
        xs = np.arange(max(cx - rx, 0), min(cx + rx, w_out - 1) + 1)
        ys = np.arange(max(cy - ry, 0), min(cy + ry, h_out - 1) + 1)
        sigma_x, sigma_y = (2 * rx + 1) / 6, (2 * ry + 1) / 6
        along_y = np.exp(-((ys - cy) ** 2) / (2 * sigma_y**2))
        along_x = np.exp(-((xs - cx) ** 2) / (2 * sigma_x**2))
        gauss = along_y[:, None] * along_x[None, :]
        gauss *= math.log(max(float(areas[m]) * stride * stride, 2.0)) / gauss.sum()
        window = (slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
        weight[window] = gauss
        box[(slice(None), *window)] = cells[m][:, None, None]
    return box, weight


def _check_labels(num_boxes: int, labels: np.ndarray, num_classes: int) -> None:
    if labels.shape[0] != num_boxes:
        raise ValueError(f"CenterNetTargetEncoder: {num_boxes} boxes but {labels.shape[0]} labels")
    if labels.size:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"CenterNetTargetEncoder: labels must be in [0, {num_classes}), got "
                f"min {low}, max {high}; check the dataset's class mapping"
            )


def _draw_gaussians(
    num_classes: int,
    h_out: int,
    w_out: int,
    cx: np.ndarray,
    cy: np.ndarray,
    radius: np.ndarray,
    labels: np.ndarray,
    layout: str | None = None,
) -> np.ndarray:
    """All objects' `draw_umich_gaussian` windows at once, max-merged per class channel.

    Takes int64 numpy arrays [M] and returns the float32 numpy heatmap [C, H_out, W_out].
    exp(-(dx^2 + dy^2) / (2 sigma^2)) is the outer product of 1-D factors: the reference's values
    up to float64 rounding, from O(M D) exponentials (D = 2R+1, R the largest radius). A factor
    is 0 outside its object's radius or the map, so the product is 0 there, and such a cell's
    index is clamped into the map: a no-op for a max into a non-negative heatmap.
    Layout "shared": every object gets the D x D window (fast when radii are alike); "ragged":
    each object exactly its own (2r+1)^2 cells (no padding when one huge object sits among
    small ones). None picks "shared" unless it would more than double the cells. The merge is
    `np.maximum.at` (unbuffered: repeated cells of overlapping same-class objects all count).
    """
    if layout not in (None, "shared", "ragged"):
        raise ValueError(f"unknown layout {layout!r}: use 'shared', 'ragged' or None")
    heatmap = np.zeros(num_classes * h_out * w_out, dtype=np.float32)
    if cx.size == 0:
        return heatmap.reshape(num_classes, h_out, w_out)
    r_max = int(radius.max())
    side = 2 * radius + 1
    if layout is None:
        padded = cx.size * (2 * r_max + 1) ** 2
        layout = "shared" if padded <= 2 * int((side * side).sum()) else "ragged"

    # 1-D factors [M, D] along x and y, their flat heatmap offsets (clamped into the map).
    delta = np.arange(-r_max, r_max + 1)
    sigma = side[:, None] / 6  # gaussian2D: sigma = diameter / 6 (float64)
    profile = np.exp(-(delta * delta) / (2 * sigma * sigma))
    profile *= np.abs(delta) <= radius[:, None]
    x = cx[:, None] + delta
    y = cy[:, None] + delta
    px = profile * ((x >= 0) & (x < w_out))
    py = profile * ((y >= 0) & (y < h_out))
    col = np.minimum(np.maximum(x, 0), w_out - 1)
    row = (labels[:, None] * h_out + np.minimum(np.maximum(y, 0), h_out - 1)) * w_out

    if layout == "shared":
        values, flat = _shared_windows(px, py, col, row)
    else:
        values, flat = _ragged_windows(px, py, col, row, radius)
    # gaussian2D zeroes values < eps * peak (peak = 1). The smallest value in a window, at its
    # corner, is exp(-36 r^2 / (2r + 1)^2) > exp(-9), decreasing in r: the pass only runs if
    # that ever changes.
    if math.exp(-2 * r_max**2 / (2 * ((2 * r_max + 1) / 6) ** 2)) < _EPS64:
        values[values < _EPS64] = 0.0
    np.maximum.at(heatmap, flat, values.astype(np.float32))
    return heatmap.reshape(num_classes, h_out, w_out)


def _shared_windows(
    px: np.ndarray, py: np.ndarray, col: np.ndarray, row: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """float64 values and flat indices of every object's D x D window (flattened), from [M, D]."""
    values = py[:, :, None] * px[:, None, :]
    flat = row[:, :, None] + col[:, None, :]
    return values.reshape(-1), flat.reshape(-1)


def _ragged_windows(
    px: np.ndarray, py: np.ndarray, col: np.ndarray, row: np.ndarray, radius: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """float64 values and flat indices of each object's own (2r+1)^2 cells, from [M, D] factors.

    Object m's window is entries R - r .. R + r of its D factors: rows are repeated per object,
    then cells per row, so every step is a repeat or an arange (no division).
    """
    num, size = px.shape
    side = 2 * radius + 1
    first = np.arange(0, num * size, size) + (size // 2 - radius)  # flat entry of dy = dx = -r
    row_start = np.cumsum(side) - side
    # Rows: row k of object m reads y entry first[m] + k.
    row_y = np.arange(int(row_start[-1] + side[-1])) + np.repeat(first - row_start, side)
    row_side = np.repeat(side, side)
    row_x = np.repeat(first, side)  # x entry of the row's first cell
    cell_start = np.cumsum(row_side) - row_side
    # Cells: cell j of a row reads x entry row_x + j.
    cell_x = np.arange(int(cell_start[-1] + row_side[-1])) + np.repeat(row_x - cell_start, row_side)
    values = np.repeat(py.reshape(-1)[row_y], row_side) * px.reshape(-1)[cell_x]
    flat = np.repeat(row.reshape(-1)[row_y], row_side) + col.reshape(-1)[cell_x]
    return values, flat
