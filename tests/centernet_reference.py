"""Reference CenterNet target code, kept for tests and benchmarks only (not part of the toolkit).

Straight transcriptions of the CenterNet reference code (xingyizhou/CenterNet: `utils/image.py`
`gaussian_radius`, `gaussian2D`, `draw_umich_gaussian`, and the ctdet dataset's targets), the
oracle that `toolkit_plugins.heads.centernet_targets.CenterNetTargetEncoder` is tested against
and the baseline `benchmarks/data_pipeline.py` times it against. Import it as
`from centernet_reference import ...` (tests/ is on sys.path for the tests; benchmarks add it).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _as_tensor(value: object, dtype: torch.dtype) -> torch.Tensor:
    """`value` as a plain, detached CPU tensor of `dtype`."""
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    return tensor.as_subclass(torch.Tensor).detach().to(device="cpu", dtype=dtype)


def gaussian_radius(height: torch.Tensor, width: torch.Tensor, min_overlap: float) -> torch.Tensor:
    """Reference `gaussian_radius` on tensors (float64 advised): min of the three quadratic roots.

    Keeps the reference's quirk of dividing each root by 2 rather than 2a. The encoder uses the
    numpy twin `centernet_targets._gaussian_radius_np` (same formulas).
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
    it applies the same clipping/slot conventions (`centernet_targets`' docstring) but does not warn.
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
