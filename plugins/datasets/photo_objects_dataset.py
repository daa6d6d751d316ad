"""A stand-in for natural photos with few large objects: one class, one or two large objects per image.

Web photos of one kind of thing (a pet, a car, a hornet's nest) mostly hold one or two large
instances, cut by nothing, on a busy background, among other things that are not of the class.
`PhotoObjectsDataset` renders that situation from (seed, index) alone:

- the background: a smooth colour field split at a random horizon, with multi-scale (1/f) noise
  texture and clutter (lines and blobs) on it;
- 0..k unlabelled distractors (smaller objects of any other shape or texture), drawn first;
- 1..n objects of the class (`target_shape` with `target_texture`, in random colours), large
  (0.35 to 0.8 of the image side by default), drawn last;
- global lighting and pixel noise as in the patterns world.

Class objects that end up less than MIN_VISIBLE visible are not labelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

from toolkit_plugins.datasets.common import coco_ground_truth, detection_target
from toolkit_plugins.datasets.patterns_dataset import (
    MIN_VISIBLE,
    TEXTURES,
    PatternObject,
    PatternRenderer,
    Scene,
)

NOISE_OCTAVES = 5  # the coarsest noise field has 4 x 4 cells, each next one twice as many per side
HORIZON_P = 0.7  # chance that the background is split in two regions (sky and ground, wall and floor)
CACHE_LIMIT = 4096  # rendered scenes kept per dataset (256 px: 192 KB each)


class PhotoRenderer(PatternRenderer):
    """PatternRenderer with a photo-like background: horizon, multi-scale noise texture, blur."""

    def __init__(
        self,
        *,
        image_size: int,
        seed: int,
        object_size: tuple[float, float],
        distractor_size: tuple[float, float],
    ) -> None:
        super().__init__(image_size=image_size, seed=seed, object_size=object_size)
        self.distractor_size = distractor_size

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        size = self.size
        base = super()._background(rng).astype(np.float32)
        if rng.random() < HORIZON_P:
            horizon = rng.uniform(0.25, 0.75) * size
            tilt = rng.uniform(-0.2, 0.2)
            ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
            below = (ys - horizon - tilt * (xs - size / 2)) > 0
            shift = rng.uniform(-70, 70, 3).astype(np.float32)
            base = np.where(below[..., None], base + shift, base)
        texture = np.zeros((size, size, 3), dtype=np.float32)
        for octave in range(NOISE_OCTAVES):
            cells = 4 * 2**octave
            field = rng.normal(0.0, 1.0, (cells, cells, 3)).astype(np.float32)
            channels = [
                np.asarray(Image.fromarray(field[..., c]).resize((size, size), Image.Resampling.BICUBIC))
                for c in range(3)
            ]
            texture += np.stack(channels, axis=-1) * 0.6**octave
        base += texture * rng.uniform(8.0, 30.0)
        image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
        return np.asarray(image.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.5))))

    def render_scene(
        self, rng: np.random.Generator, distractors: Sequence[PatternObject], targets: Sequence[PatternObject]
    ) -> Scene:
        """Distractors at their own size range, then the targets at the class size range, on top.

        The Scene lists the targets only (their boxes and visible fractions).
        """
        objects = [*distractors, *targets]
        sizes = [self.distractor_size] * len(distractors) + [self.object_size] * len(targets)
        scene = self.render(rng, objects, sizes=sizes)
        first = len(distractors)
        return Scene(scene.image, scene.boxes[first:], scene.visible[first:])


class PhotoObjectsDataset(torch.utils.data.Dataset):
    """One class of large textured objects (1..n per image) among distractors on photo-like backgrounds.

    Targets are detection dicts (XYXY boxes, labels all 0); image `i` depends only on
    (seed, i). Rendered images are kept (up to CACHE_LIMIT per dataset).
    """

    task = "detection"

    def __init__(
        self,
        *,
        length: int,
        image_size: int,
        seed: int,
        class_name: str,
        target_shape: str,
        target_texture: str,
        shapes: Sequence[str],
        objects: tuple[int, int],
        object_size: tuple[float, float],
        distractors: tuple[int, int],
        distractor_size: tuple[float, float],
    ) -> None:
        self.length = length
        self.image_size = image_size
        self.class_names = [class_name]
        self.category_ids = [0]
        self.skipped: list[str] = []
        self.target = PatternObject(target_shape, target_texture, False)
        self.shapes = list(shapes)
        self.objects = objects
        self.distractors = distractors
        self.renderer = PhotoRenderer(
            image_size=image_size, seed=seed, object_size=object_size, distractor_size=distractor_size
        )
        self._scenes: dict[int, Scene] = {}
        self._ground_truth: dict[str, Any] | None = None

    def __len__(self) -> int:
        return self.length

    def _distractor(self, rng: np.random.Generator) -> PatternObject:
        """Any shape and texture but the class's own combination."""
        while True:
            shape = self.shapes[int(rng.integers(len(self.shapes)))]
            item = PatternObject(shape, TEXTURES[int(rng.integers(len(TEXTURES)))], False)
            if (item.shape, item.texture) != (self.target.shape, self.target.texture):
                return item

    def scene(self, index: int) -> Scene:
        """The rendered scene `index` (its class objects' boxes and visible fractions)."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of length {self.length}")
        kept = self._scenes.get(index)
        if kept is not None:
            return kept
        rng = self.renderer.rng(index)
        count = int(rng.integers(self.distractors[0], self.distractors[1] + 1))
        distractors = [self._distractor(rng) for _ in range(count)]
        targets = [self.target] * int(rng.integers(self.objects[0], self.objects[1] + 1))
        scene = self.renderer.render_scene(rng, distractors, targets)
        scene.image.setflags(write=False)
        if len(self._scenes) < CACHE_LIMIT:
            self._scenes[index] = scene
        return scene

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        index = int(index)
        scene = self.scene(index)
        kept = scene.visible >= MIN_VISIBLE
        boxes = scene.boxes[kept]
        labels = np.zeros(len(boxes), dtype=np.int64)
        size = self.image_size
        return torch.from_numpy(scene.image.copy()), detection_target(boxes, labels, index, size, size)

    def ground_truth(self) -> dict[str, Any]:
        """COCO-format ground truth of every image (rendered once, then cached)."""
        if self._ground_truth is None:
            images, per_image = [], []
            size = self.image_size
            for index in range(self.length):
                scene = self.scene(index)
                kept = scene.visible >= MIN_VISIBLE
                images.append({"id": index, "width": size, "height": size, "file_name": f"{index:06d}.png"})
                per_image.append([(box, 0, False, False) for box in scene.boxes[kept]])
            self._ground_truth = coco_ground_truth(images, per_image, self.class_names)
        return self._ground_truth
