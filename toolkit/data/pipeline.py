"""From a dataset sample to a model-ready sample: augmentation, dtype, the task's steps, targets.

Images leave as float RGB in [0, 1] (the model normalizes). What is task-specific (how a dataset
target enters the transforms, extra steps such as box sanitizing, how targets are packed for the
head's encoder) is asked of the task object (`toolkit.contracts.Task`). Each sample is augmented
under its own seed, derived from (data seed, epoch, index), so a batch is the same whatever the
number of workers or the order in which they run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from toolkit.contracts import NeedsFloat, Task
from toolkit.errors import BadSampleError, DataError


@dataclass
class Sample:
    """One processed sample: image [3,H,W] in [0, 1], encoded targets, and what evaluation needs."""

    image: torch.Tensor
    targets: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SkippedSample:
    """A sample that was bad and skipped (`data.on_bad_sample: skip`)."""

    index: int
    reason: str


def compose(
    transforms: Sequence[Callable[..., Any]], *, after: Sequence[Callable[..., Any]] = ()
) -> v2.Compose:
    """Chain transforms; convert uint8 to float [0,1] right before the first transform that needs
    it (or after the last), then append `after` (the task's own steps, e.g. box sanitizing)."""
    steps: list[Callable[..., Any]] = []
    converted = False
    for transform in transforms:
        if isinstance(transform, NeedsFloat) and transform.needs_float and not converted:
            steps.append(v2.ToDtype(torch.float32, scale=True))
            converted = True
        steps.append(transform)
    if not converted:
        steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose([*steps, *after])


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample in one epoch."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0] >> 1)


class ProcessedDataset(Dataset):
    """Wraps a dataset: `self[(index, epoch)]` is the augmented, encoded Sample (or SkippedSample)."""

    def __init__(
        self,
        dataset: Any,
        transform: v2.Compose,
        encoder: Callable[..., dict[str, torch.Tensor]],
        task: Task,
        *,
        input_size: tuple[int, int],
        seed: int = 0,
        skip_bad: bool = False,
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.encoder = encoder
        self.task = task
        self.input_size = tuple(input_size)
        self.seed = seed
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int] | int) -> Sample | SkippedSample:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        try:
            image, target = self.dataset[index]
        except BadSampleError as exc:
            if self.skip_bad:
                return SkippedSample(index, str(exc))
            raise
        return self.process(image, target, index=index, epoch=epoch)

    def augment(
        self, image: torch.Tensor, target: Any, *, index: int, epoch: int
    ) -> tuple[torch.Tensor, Any]:
        """Apply the transform under the sample's own seed; return (image, target dict)."""
        height, width = image.shape[-2:]
        target = self.task.prepare_target(target)
        target["orig_size"] = torch.tensor([height, width])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, epoch, index))
            image, target = self.transform(tv_tensors.Image(image), target)
        if tuple(image.shape[-2:]) != self.input_size:
            raise DataError(
                f"data.augment produced a {tuple(image.shape[-2:])} image but model.input_size is "
                f"{self.input_size}; end data.augment with a transform that resizes to the input size "
                "(e.g. {type: resize})"
            )
        return image.as_subclass(torch.Tensor), target

    def process(self, image: torch.Tensor, target: Any, *, index: int, epoch: int) -> Sample:
        image, target = self.augment(image, target, index=index, epoch=epoch)
        meta: dict[str, Any] = {
            "index": index,
            "orig_size": target["orig_size"],
            "image_id": int(target.get("image_id", index)),
        }
        if "letterbox" in target:
            meta["letterbox"] = target["letterbox"]
        return Sample(image, self.task.encode_target(target, self.encoder), meta)
