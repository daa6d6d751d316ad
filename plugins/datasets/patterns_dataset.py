"""Patterned objects in clutter: the presence/absence task of the fine-tuning demo and its pretraining set.

The world: objects with a shape (from the shapes catalogue), a texture (stripes, checker, spots,
solid) and two colours, on a smooth random background with clutter (lines and blobs), under
random lighting (gain, offset, a gradient) and pixel noise.

- `PresenceDataset`: is the target object (a shape with a texture in the target colours, like a
  hornet's striped abdomen) in the scene? Every scene holds distractors of any shape and texture,
  some in the target colours but never with the target's texture; a negative scene holds a decoy
  in the target's place: the target's shape and colours with another texture covering as much.
  Decoy and target are drawn last, with the same size distribution, so colour statistics carry
  almost no signal: only the texture in those colours tells.
- `PatternObjectsDataset`: patterned objects labelled with their shape and texture, and with
  `palette=True` also whether they wear the target colours (the broad "pretraining" task of this
  world, the way ImageNet holds wasps and bees among a thousand classes).

Image `i` depends only on (seed, i); a presence image is rendered once per process (see
`PRESENCE_CACHE`), since the fine-tuning demo reads the same images in fifteen runs.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from toolkit_plugins.datasets.common import coco_ground_truth, detection_target
from toolkit_plugins.datasets.shapes_dataset import shape_mask

TEXTURES: tuple[str, ...] = ("stripes", "checker", "spots", "solid")
#: The target's colours: yellow and near-black (jittered per object).
TARGET_COLOURS = ((225, 185, 30), (35, 25, 20))
COLOUR_JITTER = 25
OBJECT_SIZE = (0.3, 0.5)  # (min, max) object diameter as a fraction of the image side (log-uniform)
TARGET_PALETTE_P = 0.4  # chance that a distractor wears the target's colours
PLACEMENT_TRIES = 12
MIN_VISIBLE = 0.5  # detection: an object less visible than this (fraction of its area) is not labelled
PALETTES = ("other", "yellow-black")  # pattern_objects(palette=True): the third part of a class name
PRESENCE_CACHE = 16384  # rendered presence images kept per process (64 px: 12 KB each)


@dataclass
class Scene:
    """A rendered scene: pixels uint8 [3,H,W], each object's tight XYXY box and visible fraction."""

    image: np.ndarray
    boxes: np.ndarray  # float32 [N,4], in drawing order
    visible: np.ndarray  # float [N]


@dataclass(frozen=True)
class PatternObject:
    """What to draw: a shape, a texture and whether it wears the target colours."""

    shape: str
    texture: str
    target_colours: bool


def texture_pattern(texture: str, size: int, period: float, angle: float, phase: np.ndarray) -> np.ndarray:
    """Boolean [size,size]: True where the second colour goes (stripes and checker cover half)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    cos, sin = math.cos(angle), math.sin(angle)
    u = (xs * cos + ys * sin) / period + phase[0]
    v = (-xs * sin + ys * cos) / period + phase[1]
    if texture == "stripes":
        return (u % 1.0) < 0.5
    if texture == "checker":
        return (np.floor(u) + np.floor(v)) % 2 == 0
    if texture == "spots":
        return (u % 1.0 - 0.5) ** 2 + (v % 1.0 - 0.5) ** 2 < 0.3**2
    if texture == "solid":
        return np.zeros((size, size), dtype=bool)
    raise ValueError(f"unknown texture {texture!r}; textures: {', '.join(TEXTURES)}")


class PatternRenderer:
    """Draws scenes of patterned objects from a numpy Generator seeded with [seed, index] only."""

    def __init__(self, *, image_size: int, seed: int, object_size: tuple[float, float] = OBJECT_SIZE) -> None:
        self.size = image_size
        self.seed = seed
        self.object_size = object_size

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, index])

    def render(
        self,
        rng: np.random.Generator,
        objects: Sequence[PatternObject],
        sizes: Sequence[tuple[float, float]] | None = None,
    ) -> Scene:
        """Background, clutter, `objects` in order (later on top), lighting, noise.

        `sizes`: each object's (min, max) diameter as a fraction of the side (default `object_size`).
        """
        size = self.size
        canvas = self._background(rng).astype(np.float32)
        id_map = np.zeros((size, size), dtype=np.uint8)
        boxes, areas = [], []
        for number, item in enumerate(objects, start=1):
            size_range = self.object_size if sizes is None else sizes[number - 1]
            box, area = self._draw(rng, canvas, id_map, item, number, size_range)
            boxes.append(box)
            areas.append(area)
        canvas = self._lighting(rng, canvas)
        canvas += rng.normal(0.0, rng.uniform(2.0, 8.0), canvas.shape).astype(np.float32)
        image = np.clip(canvas, 0, 255).astype(np.uint8).transpose(2, 0, 1).copy()
        shown = np.bincount(id_map.ravel(), minlength=len(objects) + 1)[1:]
        visible = shown / np.maximum(np.array(areas, dtype=np.float64), 1.0)
        return Scene(image, np.array(boxes, dtype=np.float32).reshape(-1, 4), visible)

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        size = self.size
        cells = int(rng.integers(2, 6))
        field = rng.integers(30, 226, (cells, cells, 3), dtype=np.uint8)
        image = Image.fromarray(field).resize((size, size), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(2, 7))):  # clutter: lines and blobs, some in the target colours
            colour = self._colour(rng, rng.random() < 0.3)
            if rng.random() < 0.5:
                x1, y1, x2, y2 = rng.uniform(-0.1 * size, 1.1 * size, 4).tolist()
                draw.line(
                    [(x1, y1), (x2, y2)], fill=colour, width=int(rng.integers(1, max(2, size // 24) + 1))
                )
            else:
                cx, cy = rng.uniform(0, size, 2)
                r = rng.uniform(0.03, 0.1) * size
                angles = np.sort(rng.uniform(0, 2 * math.pi, int(rng.integers(4, 8))))
                radii = r * rng.uniform(0.5, 1.0, len(angles))
                points = [
                    (cx + q * math.cos(a), cy + q * math.sin(a)) for q, a in zip(radii, angles, strict=True)
                ]
                draw.polygon(points, fill=colour)
        return np.array(image)

    @staticmethod
    def _colour(rng: np.random.Generator, target: bool, which: int | None = None) -> tuple[int, int, int]:
        if target:
            base = np.array(TARGET_COLOURS[rng.integers(0, 2) if which is None else which], dtype=np.int64)
            return tuple(
                int(c) for c in np.clip(base + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3), 0, 255)
            )
        return tuple(int(c) for c in rng.integers(0, 256, 3))

    def _pair(self, rng: np.random.Generator, target: bool) -> tuple[np.ndarray, np.ndarray]:
        if target:
            first, second = self._colour(rng, True, 0), self._colour(rng, True, 1)
            pair = (first, second) if rng.random() < 0.5 else (second, first)
            return np.array(pair[0], np.float32), np.array(pair[1], np.float32)
        while True:  # two random colours far enough apart for the texture to show
            a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            if float(((a - b) ** 2).sum()) >= 120.0**2:
                return a.astype(np.float32), b.astype(np.float32)

    def _draw(
        self,
        rng: np.random.Generator,
        canvas: np.ndarray,
        id_map: np.ndarray,
        item: PatternObject,
        number: int,
        size_range: tuple[float, float],
    ) -> tuple[list[float], int]:
        """Draw `item` in the least covered of a few random places; its tight box and pixel area."""
        size = self.size
        low, high = size_range
        diameter = size * math.exp(rng.uniform(math.log(low), math.log(high)))
        mask = shape_mask(item.shape, diameter, float(rng.uniform(0, 2 * math.pi)))
        n = mask.shape[0]
        period = max(3.0, diameter * rng.uniform(0.2, 0.3))
        pattern = texture_pattern(
            item.texture, n, period, float(rng.uniform(0, math.pi)), rng.uniform(0, 1, 2)
        )
        first, second = self._pair(rng, item.target_colours)
        fill = np.where(pattern[..., None], second, first)
        x0 = y0 = 0
        best = None
        for _ in range(PLACEMENT_TRIES):
            x, y = (int(v) for v in rng.integers(0, size - n + 1, 2))
            overlap = int(np.count_nonzero(id_map[y : y + n, x : x + n][mask]))
            if best is None or overlap < best:
                best, x0, y0 = overlap, x, y
            if overlap == 0:
                break
        np.copyto(canvas[y0 : y0 + n, x0 : x0 + n], fill, where=mask[..., None])
        id_map[y0 : y0 + n, x0 : x0 + n][mask] = number
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = [x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1]
        return [float(v) for v in box], int(mask.sum())

    def _lighting(self, rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
        size = self.size
        gain = rng.uniform(0.6, 1.3)
        angle = rng.uniform(0, 2 * math.pi)
        ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
        gradient = math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None]
        light = gain * (1.0 + rng.uniform(0.0, 0.3) * gradient)
        return canvas * light[..., None] + rng.uniform(-20, 20)


class PresenceDataset(torch.utils.data.Dataset):
    """Scenes labelled 1 when the target (shape and texture in the target colours) is present.

    The first `positives` indices hold the target, the rest do not; every image depends only on
    (seed, index).
    """

    task = "classification"

    def __init__(
        self,
        *,
        positives: int,
        negatives: int,
        image_size: int,
        seed: int,
        target_shape: str,
        target_texture: str,
        shapes: Sequence[str],
        distractors: tuple[int, int] = (1, 4),
        object_size: tuple[float, float] = OBJECT_SIZE,
    ) -> None:
        self.positives, self.negatives = positives, negatives
        self.image_size = image_size
        self.seed = seed
        self.target = PatternObject(target_shape, target_texture, True)
        self.shapes = list(shapes)
        self.distractors = distractors
        self.class_names = ["absent", "present"]
        self.category_ids = [0, 1]
        self.skipped: list[str] = []
        self.renderer = PatternRenderer(image_size=image_size, seed=seed, object_size=object_size)
        self._key = (image_size, seed, self.target, tuple(self.shapes), *distractors, *object_size, positives)

    def __len__(self) -> int:
        return self.positives + self.negatives

    def label(self, index: int) -> int:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a presence dataset of length {len(self)}")
        return int(index < self.positives)

    def objects(self, index: int, rng: np.random.Generator) -> list[PatternObject]:
        """Distractors (anything but the target), then the target or a decoy, drawn last."""
        low, high = self.distractors
        items = [self._distractor(rng) for _ in range(int(rng.integers(low, high + 1)))]
        items.append(self.target if self.label(index) else self._decoy(rng))
        return items

    def _distractor(self, rng: np.random.Generator) -> PatternObject:
        """Any shape and texture; in the target colours, never with the target's texture."""
        while True:
            item = PatternObject(
                self.shapes[int(rng.integers(len(self.shapes)))],
                TEXTURES[int(rng.integers(len(TEXTURES)))],
                bool(rng.random() < TARGET_PALETTE_P),
            )
            if not (item.target_colours and item.texture == self.target.texture):
                return item

    def _decoy(self, rng: np.random.Generator) -> PatternObject:
        """The target's shape and colours with another texture that covers as much (stripes <-> checker)."""
        textures = [t for t in ("stripes", "checker") if t != self.target.texture] or ["spots"]
        return PatternObject(self.target.shape, textures[int(rng.integers(len(textures)))], True)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = int(index)
        label = self.label(index)
        key = (self._key, index)
        image = _rendered.get(key)
        if image is None:
            rng = self.renderer.rng(index)
            image = self.renderer.render(rng, self.objects(index, rng)).image
            image.setflags(write=False)
            _rendered[key] = image
            if len(_rendered) > PRESENCE_CACHE:
                _rendered.popitem(last=False)
        return torch.from_numpy(image.copy()), label


_rendered: OrderedDict[tuple[Any, int], np.ndarray] = OrderedDict()  # presence images, oldest first


class PatternObjectsDataset(torch.utils.data.Dataset):
    """Patterned objects among clutter, classed by (shape, texture[, palette]): the broad pretraining task.

    task "detection": scenes of `objects` (min, max) objects with boxes (an object less than
    MIN_VISIBLE visible is not labelled); task "classification": one object per image. Classes
    are 'shape/texture', or with `palette` 'shape/texture/other' and 'shape/texture/yellow-black'
    (the target colours, worn by a share TARGET_PALETTE_P of the objects).
    """

    def __init__(
        self,
        *,
        task: str,
        length: int,
        image_size: int,
        seed: int,
        shapes: Sequence[str],
        textures: Sequence[str] = TEXTURES,
        objects: tuple[int, int] = (1, 5),
        object_size: tuple[float, float] = OBJECT_SIZE,
        palette: bool = False,
    ) -> None:
        self.task = task
        self.length = length
        self.image_size = image_size
        self.shapes = list(shapes)
        self.textures = list(textures)
        self.objects = objects if task == "detection" else (1, 1)
        self.palette = palette
        self.class_names = [
            f"{shape}/{texture}{f'/{colours}' if palette else ''}"
            for shape in self.shapes
            for texture in self.textures
            for colours in (PALETTES if palette else ("",))
        ]
        self.category_ids = list(range(len(self.class_names)))
        self.skipped: list[str] = []
        self.renderer = PatternRenderer(image_size=image_size, seed=seed, object_size=object_size)
        self._ground_truth: dict[str, Any] | None = None

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int) -> tuple[Scene, np.ndarray]:
        """The rendered scene `index` and the class label of each of its objects."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of length {self.length}")
        rng = self.renderer.rng(index)
        items, labels = self.drawn_objects(rng)
        return self.renderer.render(rng, items), np.array(labels, dtype=np.int64)

    def drawn_objects(self, rng: np.random.Generator) -> tuple[list[PatternObject], list[int]]:
        """The objects of one scene, drawn from `rng` (the scene's own), and their class labels."""
        count = int(rng.integers(self.objects[0], self.objects[1] + 1))
        kinds = rng.integers(0, len(self.shapes) * len(self.textures), count)
        items, labels = [], []
        for kind in kinds:
            shape = self.shapes[int(kind) // len(self.textures)]
            texture = self.textures[int(kind) % len(self.textures)]
            target_colours = bool(rng.random() < TARGET_PALETTE_P)
            items.append(PatternObject(shape, texture, target_colours))
            labels.append(int(kind) * len(PALETTES) + int(target_colours) if self.palette else int(kind))
        return items, labels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        index = int(index)
        scene, labels = self.scene(index)
        image = torch.from_numpy(scene.image)
        if self.task == "classification":
            return image, int(labels[0])
        kept = scene.visible >= MIN_VISIBLE
        return image, detection_target(
            scene.boxes[kept], labels[kept], index, self.image_size, self.image_size
        )

    def ground_truth(self) -> dict[str, Any]:
        """COCO-format ground truth of every image (rendered once, then cached)."""
        if self.task != "detection":
            raise TypeError("ground_truth() is defined for the detection task only")
        if self._ground_truth is None:
            images, per_image = [], []
            for index in range(self.length):
                scene, labels = self.scene(index)
                kept = scene.visible >= MIN_VISIBLE
                size = self.image_size
                images.append({"id": index, "width": size, "height": size, "file_name": f"{index:06d}.png"})
                objects = zip(scene.boxes[kept], labels[kept], strict=True)
                per_image.append([(box, int(label), False, False) for box, label in objects])
            self._ground_truth = coco_ground_truth(images, per_image, self.class_names)
        return self._ground_truth
