"""Synthetic shapes: a renderer deterministic in (seed, index) and the dataset built on it.

Each image: a smooth random background (a tiny random colour field upsampled bicubically), a few
random lines, shapes of random colour, size (log-uniform between 1/16 and 1/2 of the side, or
between the `object_size` bounds in pixels: many small objects in a large image),
rotation and shading, then per-pixel noise. Later shapes cover earlier ones; an instance-id map
tracks what stays visible. A shape less than MIN_VISIBLE visible is not labelled; a box is the
tight pixel bounds of the shape's drawn mask (integer-valued: x2 = last column + 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from toolkit_plugins.datasets.common import coco_ground_truth, detection_target
from toolkit_plugins.datasets.shapes import CATALOGUE

MIN_VISIBLE = 0.35  # fraction of its drawn area a shape must keep visible to be labelled
MIN_SIDE_FRACTION, MAX_SIDE_FRACTION = 1 / 16, 1 / 2
MIN_DIAMETER = 6.0  # pixels: smaller shapes are unrecognisable
MIN_CONTRAST = 110.0  # RGB distance between a shape's colour and the pixels it covers
PLACEMENT_TRIES = 10
CLASSIFICATION_DISTRACTORS = (1, 6)
CLASSIFICATION_TARGETS = (1, 3)


# -- shape masks ---------------------------------------------------------------------------------
def _regular(sides: int, phase: float = 0.0) -> np.ndarray:
    angles = phase + 2 * math.pi * np.arange(sides) / sides
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star() -> np.ndarray:
    angles = -math.pi / 2 + math.pi * np.arange(10) / 5
    radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _cross(arm: float = 0.34) -> np.ndarray:
    a = arm
    return np.array(
        [
            (-a, -1),
            (a, -1),
            (a, -a),
            (1, -a),
            (1, a),
            (a, a),
            (a, 1),
            (-a, 1),
            (-a, a),
            (-1, a),
            (-1, -a),
            (-a, -a),
        ],
        dtype=np.float64,
    ) / math.hypot(1, a)


def _ellipse(ratio: float = 0.5, points: int = 48) -> np.ndarray:
    angles = 2 * math.pi * np.arange(points) / points
    return np.stack([np.cos(angles), ratio * np.sin(angles)], axis=1)


#: Polygon outlines (unit radius) of the rotatable shapes.
POLYGONS: dict[str, np.ndarray] = {
    "square": _regular(4, math.pi / 4),
    "triangle": _regular(3, -math.pi / 2),
    "star": _star(),
    "diamond": np.array([(0, -1), (0.55, 0), (0, 1), (-0.55, 0)], dtype=np.float64),
    "ellipse": _ellipse(),
    "cross": _cross(),
    "hexagon": _regular(6),
}
ROUND = ("circle", "ring")
assert set(POLYGONS) | set(ROUND) == set(CATALOGUE), "every catalogue shape needs a drawer"


def shape_mask(kind: str, diameter: float, angle: float) -> np.ndarray:
    """Boolean mask [n,n] of `kind` with the given circumscribed diameter, rotated by `angle` (radians)."""
    n = math.ceil(diameter) + 2
    centre = n / 2
    radius = diameter / 2
    image = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(image)
    if kind in ROUND:
        draw.ellipse([centre - radius, centre - radius, centre + radius, centre + radius], fill=1)
        if kind == "ring":
            inner = radius * 0.55
            draw.ellipse([centre - inner, centre - inner, centre + inner, centre + inner], fill=0)
    else:
        cos, sin = math.cos(angle), math.sin(angle)
        unit = POLYGONS[kind]
        xs = centre + radius * (unit[:, 0] * cos - unit[:, 1] * sin)
        ys = centre + radius * (unit[:, 0] * sin + unit[:, 1] * cos)
        draw.polygon(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=1)
    return np.asarray(image, dtype=bool)


# -- rendering -----------------------------------------------------------------------------------
@dataclass
class Rendered:
    """One rendered image: pixels [3,H,W] uint8 (None when not requested), labelled boxes and labels."""

    image: np.ndarray | None
    boxes: np.ndarray  # float32 [M,4] XYXY
    labels: np.ndarray  # int64 [M]
    kinds: list[str]  # shape name of each labelled box
    present: bool  # classification: the target shape is visible
    id_map: np.ndarray  # uint8 [H,W]: number (1-based draw order) of the shape on top, 0: background
    numbers: list[int]  # id_map number of each labelled box
    visible: np.ndarray  # float [M]: visible fraction of each labelled shape's drawn area


@dataclass
class _Shape:
    kind: str
    x0: int
    y0: int
    mask: np.ndarray  # bool [h,w]
    fill: np.ndarray  # uint8 [h,w,3]: the shape's colours over its bounding square


class ShapesRenderer:
    """Draws image `index` from a numpy Generator seeded with [seed, index] only."""

    def __init__(
        self,
        *,
        image_size: int,
        class_names: Sequence[str],
        seed: int,
        min_objects: int,
        max_objects: int,
        target: str | None = None,
        object_size: tuple[float, float] | None = None,
    ) -> None:
        self.size = image_size
        low, high = object_size or (MIN_SIDE_FRACTION * image_size, MAX_SIDE_FRACTION * image_size)
        self.log_sizes = (math.log(low), math.log(high))
        self.class_names = list(class_names)
        self.seed = seed
        self.min_objects = min_objects
        self.max_objects = max_objects
        self.target = target
        others = [name for name in self.class_names if name != target]
        self.distractors = others or [name for name in CATALOGUE if name != target]

    def detection(self, index: int, *, pixels: bool = True) -> Rendered:
        rng = np.random.default_rng([self.seed, index])
        count = int(rng.integers(self.min_objects, self.max_objects + 1))
        kinds = [self.class_names[i] for i in rng.integers(0, len(self.class_names), count)]
        return self._render(rng, kinds, pixels=pixels)

    def classification(self, index: int, *, pixels: bool = True) -> Rendered:
        rng = np.random.default_rng([self.seed, index])
        present = bool(rng.random() < 0.5)
        low, high = CLASSIFICATION_DISTRACTORS
        kinds = [
            self.distractors[i] for i in rng.integers(0, len(self.distractors), rng.integers(low, high + 1))
        ]
        if present and self.target is not None:
            kinds += [self.target] * int(
                rng.integers(CLASSIFICATION_TARGETS[0], CLASSIFICATION_TARGETS[1] + 1)
            )
        kinds = [kinds[i] for i in rng.permutation(len(kinds))]
        return self._render(rng, kinds, pixels=pixels, keep_visible=self.target if present else None)

    def _render(
        self, rng: np.random.Generator, kinds: list[str], *, pixels: bool, keep_visible: str | None = None
    ) -> Rendered:
        size = self.size
        canvas = self._background(rng)
        id_map = np.zeros((size, size), dtype=np.uint8)
        shapes: list[_Shape] = []
        drawn = np.zeros(len(kinds) + 1, dtype=np.int64)
        visible = np.zeros(len(kinds) + 1, dtype=np.int64)
        log_lo, log_hi = self.log_sizes
        for number, kind in enumerate(kinds, start=1):
            diameter = max(MIN_DIAMETER, math.exp(rng.uniform(log_lo, log_hi)))
            mask = shape_mask(kind, diameter, float(rng.uniform(0, 2 * math.pi)))
            x0, y0 = self._place(rng, mask, id_map, drawn[:number], visible[:number])
            h, w = mask.shape
            colour = _contrasting_colour(rng, canvas[y0 : y0 + h, x0 : x0 + w])
            shape = _Shape(kind, x0, y0, mask, _shade(rng, colour, h, w))
            drawn[number] = int(mask.sum())
            self._stamp(shape, number, canvas, id_map, drawn, visible)
            shapes.append(shape)
        if keep_visible is not None:
            self._keep_one_visible(keep_visible, shapes, canvas, id_map, drawn, visible)
        kept = [i for i in range(len(shapes)) if visible[i + 1] >= MIN_VISIBLE * drawn[i + 1]]
        boxes = np.array([_tight_box(shapes[i]) for i in kept], dtype=np.float32).reshape(-1, 4)
        index_of = {name: label for label, name in enumerate(self.class_names)}
        labels = np.array([index_of.get(shapes[i].kind, -1) for i in kept], dtype=np.int64)
        image = None
        if pixels:  # the noise is drawn last, so skipping it leaves every other draw unchanged
            amplitude = int(rng.integers(4, 17))
            noise = rng.integers(-amplitude, amplitude + 1, (3, size, size), dtype=np.int16)
            noisy = canvas.transpose(2, 0, 1).astype(np.int16)
            noisy += noise
            image = np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)
        return Rendered(
            image=image,
            boxes=boxes,
            labels=labels,
            kinds=[shapes[i].kind for i in kept],
            present=keep_visible is not None,
            id_map=id_map,
            numbers=[i + 1 for i in kept],
            visible=np.array([visible[i + 1] / drawn[i + 1] for i in kept], dtype=np.float64),
        )

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """Smooth random colour field (gradient or blobs) crossed by a few random lines; uint8 [H,W,3]."""
        size = self.size
        cells = int(rng.integers(2, 7))
        field = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
        image = Image.fromarray(field).resize((size, size), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(1, 5))):
            x1, y1, x2, y2 = rng.uniform(-0.1 * size, 1.1 * size, 4).tolist()
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            draw.line([(x1, y1), (x2, y2)], fill=colour, width=int(rng.integers(1, max(2, size // 64) + 1)))
        return np.array(image)

    def _place(
        self,
        rng: np.random.Generator,
        mask: np.ndarray,
        id_map: np.ndarray,
        drawn: np.ndarray,
        visible: np.ndarray,
    ) -> tuple[int, int]:
        """A top-left corner keeping the shape inside the image; tries not to hide earlier shapes."""
        h, w = mask.shape
        labelled = visible >= MIN_VISIBLE * drawn
        labelled[0] = False
        x0 = y0 = 0
        for _ in range(PLACEMENT_TRIES):
            x0 = int(rng.integers(0, self.size - w + 1))
            y0 = int(rng.integers(0, self.size - h + 1))
            if not labelled.any():
                break
            covered = np.bincount(id_map[y0 : y0 + h, x0 : x0 + w][mask], minlength=len(drawn))
            if not np.any(labelled & (visible - covered < MIN_VISIBLE * drawn)):
                break
        return x0, y0

    @staticmethod
    def _stamp(
        shape: _Shape,
        number: int,
        canvas: np.ndarray,
        id_map: np.ndarray,
        drawn: np.ndarray,
        visible: np.ndarray,
    ) -> None:
        """Draw `shape` on top: update pixels, the id map and every shape's visible area."""
        h, w = shape.mask.shape
        ids = id_map[shape.y0 : shape.y0 + h, shape.x0 : shape.x0 + w]
        visible -= np.bincount(ids[shape.mask], minlength=len(visible))
        visible[0] = 0
        visible[number] = drawn[number]
        ids[shape.mask] = number
        np.copyto(
            canvas[shape.y0 : shape.y0 + h, shape.x0 : shape.x0 + w], shape.fill, where=shape.mask[..., None]
        )

    def _keep_one_visible(
        self,
        kind: str,
        shapes: list[_Shape],
        canvas: np.ndarray,
        id_map: np.ndarray,
        drawn: np.ndarray,
        visible: np.ndarray,
    ) -> None:
        """Classification: if every target shape got hidden, draw the last one again on top."""
        numbers = [i + 1 for i, shape in enumerate(shapes) if shape.kind == kind]
        if numbers and not any(visible[n] >= MIN_VISIBLE * drawn[n] for n in numbers):
            self._stamp(shapes[numbers[-1] - 1], numbers[-1], canvas, id_map, drawn, visible)


def _contrasting_colour(rng: np.random.Generator, region: np.ndarray) -> np.ndarray:
    """A random colour far (RGB distance >= MIN_CONTRAST) from the mean colour of `region`."""
    step = max(1, min(region.shape[0], region.shape[1]) // 8)
    sample = region[::step, ::step].reshape(-1, 3)
    mean = sample.sum(axis=0) / len(sample)
    candidates = rng.integers(0, 256, (16, 3))
    distances = ((candidates - mean) ** 2).sum(axis=1)
    good = np.flatnonzero(distances >= MIN_CONTRAST**2)
    return candidates[good[0] if good.size else int(np.argmax(distances))]


def _shade(rng: np.random.Generator, colour: np.ndarray, h: int, w: int) -> np.ndarray:
    """Colours over an [h,w] box: `colour` plus a mild linear shading in a random direction."""
    angle = rng.uniform(0, 2 * math.pi)
    strength = rng.uniform(-40, 40) / max(h, w)
    xs = (np.arange(w, dtype=np.float32) - w / 2) * (strength * math.cos(angle))
    ys = (np.arange(h, dtype=np.float32) - h / 2) * (strength * math.sin(angle))
    ramp = ys[:, None, None] + xs[None, :, None]
    return np.clip(colour.astype(np.float32) + ramp, 0, 255).astype(np.uint8)


def _tight_box(shape: _Shape) -> list[int]:
    """Tight pixel bounds of the drawn mask: [min col, min row, max col + 1, max row + 1]."""
    rows = np.flatnonzero(shape.mask.any(axis=1))
    cols = np.flatnonzero(shape.mask.any(axis=0))
    return [
        shape.x0 + int(cols[0]),
        shape.y0 + int(rows[0]),
        shape.x0 + int(cols[-1]) + 1,
        shape.y0 + int(rows[-1]) + 1,
    ]


# -- dataset -------------------------------------------------------------------------------------
class ShapesDataset(torch.utils.data.Dataset):
    """Synthetic shapes; sample i depends only on (seed, i), whatever the access order."""

    def __init__(
        self,
        *,
        task: str = "detection",
        length: int = 1000,
        image_size: int = 128,
        class_names: Sequence[str] = ("circle", "square", "triangle"),
        seed: int = 0,
        min_objects: int = 1,
        max_objects: int = 10,
        target: str | None = None,
        object_size: tuple[float, float] | None = None,
    ) -> None:
        if task not in ("detection", "classification"):
            raise ValueError(f"task must be 'detection' or 'classification', got {task!r}")
        self.task = task
        self.length = length
        self.image_size = image_size
        self.shape_names = list(class_names)
        self.target = (target or self.shape_names[0]) if task == "classification" else None
        self.class_names = ["absent", "present"] if task == "classification" else list(self.shape_names)
        self.category_ids = list(range(len(self.class_names)))
        self.skipped: list[str] = []
        self.renderer = ShapesRenderer(
            image_size=image_size,
            class_names=self.shape_names,
            seed=seed,
            min_objects=min_objects,
            max_objects=max_objects,
            target=self.target,
            object_size=object_size,
        )
        self._ground_truth: dict[str, Any] | None = None

    def __len__(self) -> int:
        return self.length

    def render(self, index: int, *, pixels: bool = True) -> Rendered:
        """The rendered sample `index` (pixels, boxes, labels and the instance-id map)."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a shapes dataset of length {self.length}")
        draw: Callable[..., Rendered] = (
            self.renderer.detection if self.task == "detection" else self.renderer.classification
        )
        return draw(index, pixels=pixels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        index = int(index)
        sample = self.render(index)
        assert sample.image is not None
        image = torch.from_numpy(sample.image)
        if self.task == "classification":
            return image, int(sample.present)
        return image, detection_target(sample.boxes, sample.labels, index, self.image_size, self.image_size)

    def ground_truth(self) -> dict[str, Any]:
        """COCO-format ground truth of every image (rendered without pixels once, then cached)."""
        if self.task != "detection":
            raise TypeError("ground_truth() is defined for the detection task only")
        if self._ground_truth is None:
            images, per_image = [], []
            for index in range(self.length):
                sample = self.render(index, pixels=False)
                images.append(
                    {
                        "id": index,
                        "width": self.image_size,
                        "height": self.image_size,
                        "file_name": f"{index:06d}.png",
                    }
                )
                per_image.append(
                    [
                        (box, int(label), False, False)
                        for box, label in zip(sample.boxes, sample.labels, strict=True)
                    ]
                )
            self._ground_truth = coco_ground_truth(images, per_image, self.class_names)
        return self._ground_truth
