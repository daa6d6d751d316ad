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
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

_EPS64 = float(np.finfo(np.float64).eps)  # gaussian2D's cut-off, relative to the peak (1.0)


def gaussian_radius(height: torch.Tensor, width: torch.Tensor, min_overlap: float) -> torch.Tensor:
    """Reference `gaussian_radius` on tensors (float64 advised): min of the three quadratic roots.

    Keeps the reference's quirk of dividing each root by 2 rather than 2a.
    """
    a1 = 1.0
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1**2 - 4 * a1 * c1)) / 2

    a2 = 4.0
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + torch.sqrt(b2**2 - 4 * a2 * c2)) / 2

    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + torch.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def _as_tensor(value: object, dtype: torch.dtype) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    return tensor.as_subclass(torch.Tensor).detach().to(device="cpu", dtype=dtype)


class CenterNetTargetEncoder:
    """`encoder(boxes[M, 4] xyxy input pixels, labels[M] int64) -> dict` of CenterNet targets.

    Returns "heatmap" float32 [C, H_out, W_out], "size" float32 [max_objects, 2] (w, h cells),
    "offset" float32 [max_objects, 2] (dx, dy), "index" int64 [max_objects] (y * W_out + x) and
    "mask" float32 [max_objects] (1 for a real object), with H_out = H / output_stride.
    More than `max_objects` valid objects: the first `max_objects` are kept, a warning names the
    number dropped, and `overflow_count` (per process: each DataLoader worker has its copy)
    accumulates it. Plain attributes only, so it pickles into DataLoader workers.
    """

    def __init__(
        self,
        num_classes: int,
        output_stride: int,
        input_size: tuple[int, int],
        max_objects: int = 128,
        min_overlap: float = 0.7,
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
            f"min_overlap={self.min_overlap})"
        )

    def __call__(self, boxes: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        boxes = _as_tensor(boxes, torch.float32).reshape(-1, 4)
        labels = _as_tensor(labels, torch.int64).reshape(-1)
        _check_labels(boxes.shape[0], labels, self.num_classes)
        h_out, w_out = self.output_size

        cells = boxes / self.output_stride
        cells = torch.stack(  # clipped to the output map (x1, x2, y1, y2)
            [cells[:, 0::2].clamp(0, w_out), cells[:, 1::2].clamp(0, h_out)], dim=1
        ).reshape(-1, 4)
        keep = ((cells[:, 1] > cells[:, 0]) & (cells[:, 3] > cells[:, 2])).nonzero().squeeze(1)
        n = keep.numel()
        if n > self.max_objects:
            dropped = n - self.max_objects
            self.overflow_count += dropped
            warnings.warn(
                f"CenterNetTargetEncoder: {n} objects exceed max_objects={self.max_objects}; "
                f"dropped the last {dropped} (raise the head's max_objects)",
                RuntimeWarning,
                stacklevel=2,
            )
            n = self.max_objects
            keep = keep[:n]
        x1, x2, y1, y2 = cells.index_select(0, keep).unbind(1)
        labels = labels.index_select(0, keep)
        w = x2 - x1
        h = y2 - y1

        centre = torch.stack([(x1 + x2) / 2, (y1 + y2) / 2], dim=1)
        centre_int = centre.floor()  # centre >= 0: floor == the reference's int() truncation
        radius = gaussian_radius(h.ceil().double(), w.ceil().double(), self.min_overlap)
        radius = radius.to(torch.int64).clamp(min=0)  # int(): truncation toward zero
        cx, cy = centre_int.to(torch.int64).unbind(1)

        out = {
            "heatmap": _draw_gaussians(self.num_classes, h_out, w_out, cx, cy, radius, labels),
            "size": torch.zeros(self.max_objects, 2, dtype=torch.float32),
            "offset": torch.zeros(self.max_objects, 2, dtype=torch.float32),
            "index": torch.zeros(self.max_objects, dtype=torch.int64),
            "mask": torch.zeros(self.max_objects, dtype=torch.float32),
        }
        out["size"][:n] = torch.stack([w, h], dim=1)
        out["offset"][:n] = centre - centre_int
        out["index"][:n] = cy * w_out + cx
        out["mask"][:n] = 1.0
        return out


def _check_labels(num_boxes: int, labels: torch.Tensor, num_classes: int) -> None:
    if labels.shape[0] != num_boxes:
        raise ValueError(f"CenterNetTargetEncoder: {num_boxes} boxes but {labels.shape[0]} labels")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"CenterNetTargetEncoder: labels must be in [0, {num_classes}), got "
            f"min {int(labels.min())}, max {int(labels.max())}; check the dataset's class mapping"
        )


def _draw_gaussians(
    num_classes: int,
    h_out: int,
    w_out: int,
    cx: torch.Tensor,
    cy: torch.Tensor,
    radius: torch.Tensor,
    labels: torch.Tensor,
    layout: str | None = None,
) -> torch.Tensor:
    """All objects' `draw_umich_gaussian` windows at once, max-merged per class channel.

    Layout "shared": every object gets the (2R+1)^2 window of the largest radius R (fast when
    radii are alike); "ragged": each object exactly its own (2r+1)^2 cells (no padding when one
    huge object sits among small ones). None picks "shared" unless it would more than double
    the cells. Cells outside an object's radius or the map get the value 0 at a clamped, valid
    index: a no-op for a max into a non-negative heatmap.
    """
    heatmap = torch.zeros(num_classes * h_out * w_out, dtype=torch.float32)
    if cx.numel() == 0:
        return heatmap.reshape(num_classes, h_out, w_out)
    side = 2 * radius + 1
    if layout is None:
        padded = cx.numel() * (2 * int(radius.max()) + 1) ** 2
        layout = "shared" if padded <= 2 * int((side * side).sum()) else "ragged"
    if layout == "shared":
        x, y, values = _shared_windows(cx, cy, radius)
        labels = labels[:, None, None]
    elif layout == "ragged":
        x, y, values, labels = _ragged_windows(cx, cy, radius, labels)
    else:
        raise ValueError(f"unknown layout {layout!r}: use 'shared', 'ragged' or None")
    inside = (x >= 0) & (x < w_out) & (y >= 0) & (y < h_out)
    # gaussian2D zeroes values < eps * peak (peak = 1). The smallest value in a window, at its
    # corner, is exp(-36 r^2 / (2r + 1)^2) > exp(-9): the pass only runs if that ever changes.
    corner = torch.exp(-2 * radius.double() ** 2 / (2 * (side.double() / 6) ** 2)).min()
    if corner < _EPS64:
        values = torch.where(values < _EPS64, torch.zeros_like(values), values)
    values = (values * inside).float()
    flat = (labels * h_out + y.clamp(0, h_out - 1)) * w_out + x.clamp(0, w_out - 1)
    heatmap.scatter_reduce_(0, flat.reshape(-1), values.reshape(-1), reduce="amax", include_self=True)
    return heatmap.reshape(num_classes, h_out, w_out)


def _shared_windows(
    cx: torch.Tensor, cy: torch.Tensor, radius: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x, y [M, D, D] and float64 gaussian values (0 outside each object's own radius), D = 2R+1.

    exp(-(dx^2 + dy^2) / (2 sigma^2)) is the outer product of the 1-D factors: the reference's
    values up to float64 rounding, with O(M D) exponentials.
    """
    r_max = int(radius.max())
    delta = torch.arange(-r_max, r_max + 1)
    in_window = (delta.abs() <= radius[:, None]).double()  # [M, D]
    sigma = (2 * radius[:, None] + 1).double() / 6  # gaussian2D: sigma = diameter / 6
    profile = torch.exp(-(delta * delta).double() / (2 * sigma * sigma)) * in_window
    values = profile[:, :, None] * profile[:, None, :]
    x = (cx[:, None] + delta)[:, None, :]
    y = (cy[:, None] + delta)[:, :, None]
    return x, y, values


def _ragged_windows(
    cx: torch.Tensor, cy: torch.Tensor, radius: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """x, y, float64 gaussian values and labels, one entry per cell of every object's window."""
    side = 2 * radius + 1
    count = side * side
    start = torch.cumsum(count, 0) - count
    per_object = torch.stack([start, side, radius, cx, cy, labels], dim=1)
    obj = torch.repeat_interleave(torch.arange(cx.numel()), count)
    start, s, r, x, y, label = per_object.index_select(0, obj).unbind(1)  # one gather
    cell = torch.arange(obj.numel()) - start  # index of the cell in its object's window
    row = torch.div(cell, s, rounding_mode="floor")
    dx = cell - row * s - r
    dy = row - r
    sigma = s.double() / 6
    values = torch.exp(-(dx * dx + dy * dy).double() / (2 * sigma * sigma))
    return x + dx, y + dy, values, label


# ------------------------------------------------------------------------ reference (loop) version


def gaussian_radius_reference(det_size: tuple[float, float], min_overlap: float = 0.7) -> float:
    """The reference `gaussian_radius((height, width), min_overlap)`, scalar, as in CenterNet."""
    height, width = det_size
    a1 = 1
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2 = 4
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def _gaussian2d_reference(shape: tuple[int, int], sigma: float) -> np.ndarray:
    m, n = ((s - 1.0) / 2.0 for s in shape)
    y, x = np.ogrid[-m : m + 1, -n : n + 1]
    g = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    g[g < np.finfo(g.dtype).eps * g.max()] = 0
    return g


def _draw_umich_gaussian_reference(heatmap: np.ndarray, center: tuple[int, int], radius: int) -> None:
    diameter = 2 * radius + 1
    gaussian = _gaussian2d_reference((diameter, diameter), sigma=diameter / 6)
    x, y = int(center[0]), int(center[1])
    height, width = heatmap.shape[0:2]
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    masked_heatmap = heatmap[y - top : y + bottom, x - left : x + right]
    masked_gaussian = gaussian[radius - top : radius + bottom, radius - left : radius + right]
    if min(masked_gaussian.shape) > 0 and min(masked_heatmap.shape) > 0:
        np.maximum(masked_heatmap, masked_gaussian, out=masked_heatmap)


def encode_reference_loop(
    boxes: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_classes: int,
    output_stride: int,
    input_size: tuple[int, int],
    max_objects: int = 128,
    min_overlap: float = 0.7,
) -> dict[str, torch.Tensor]:
    """Per-object numpy loop transcribing the CenterNet reference code; same output as the encoder.

    The test oracle and the benchmark baseline for `CenterNetTargetEncoder`, not for training:
    it applies the same clipping/slot conventions (module docstring) but does not warn.
    """
    boxes_np = _as_tensor(boxes, torch.float32).reshape(-1, 4).numpy()
    labels_np = _as_tensor(labels, torch.int64).reshape(-1).numpy()
    output_h, output_w = input_size[0] // output_stride, input_size[1] // output_stride
    hm = np.zeros((num_classes, output_h, output_w), dtype=np.float32)
    wh = np.zeros((max_objects, 2), dtype=np.float32)
    reg = np.zeros((max_objects, 2), dtype=np.float32)
    ind = np.zeros((max_objects,), dtype=np.int64)
    reg_mask = np.zeros((max_objects,), dtype=np.float32)
    k = 0
    for box, cls_id in zip(boxes_np, labels_np, strict=True):
        bbox = box / np.float32(output_stride)
        bbox[[0, 2]] = np.clip(bbox[[0, 2]], 0, output_w)
        bbox[[1, 3]] = np.clip(bbox[[1, 3]], 0, output_h)
        h, w = bbox[3] - bbox[1], bbox[2] - bbox[0]
        if not (h > 0 and w > 0):
            continue
        if k == max_objects:
            break
        radius = gaussian_radius_reference((math.ceil(h), math.ceil(w)), min_overlap)
        radius = max(0, int(radius))
        ct = np.array([(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2], dtype=np.float32)
        ct_int = ct.astype(np.int32)
        _draw_umich_gaussian_reference(hm[int(cls_id)], ct_int, radius)
        wh[k] = 1.0 * w, 1.0 * h
        ind[k] = ct_int[1] * output_w + ct_int[0]
        reg[k] = ct - ct_int
        reg_mask[k] = 1
        k += 1
    return {
        "heatmap": torch.from_numpy(hm),
        "size": torch.from_numpy(wh),
        "offset": torch.from_numpy(reg),
        "index": torch.from_numpy(ind),
        "mask": torch.from_numpy(reg_mask),
    }
