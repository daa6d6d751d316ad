"""From a dataset sample to a model-ready sample: augmentation, dtype, the task's steps, targets.

Images leave as float RGB in [0, 1] (the model normalizes). What is task-specific (how a dataset
target enters the transforms, extra steps such as box sanitizing, how targets are packed for the
head's encoder) is asked of the task object (`toolkit.contracts.Task`). Each sample is augmented
under its own seed, derived from (data seed, epoch, index), so a batch is the same whatever the
number of workers or the order in which they run.

A user error raised while loading a sample inside a DataLoader worker travels to the main process
as a `FailedSample` (the loader raises it there), so the message is the same with or without
workers; an exception from a component (the dataset, an augmentation, the task) becomes a
`ComponentError` naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from toolkit.contracts import NeedsFloat, Task
from toolkit.errors import BadSampleError, DataError, ToolkitError
from toolkit.guard import component_failure


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


@dataclass(frozen=True)
class FailedSample:
    """A sample whose loading raised a user error inside a DataLoader worker (re-raised by the loader)."""

    index: int
    error: ToolkitError


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

    def __getitem__(self, key: tuple[int, int] | int) -> Sample | SkippedSample | FailedSample:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        try:
            return self._load(index, epoch)
        except ToolkitError as exc:
            if torch.utils.data.get_worker_info() is None:
                raise
            return FailedSample(index, exc)  # the main process raises it (toolkit.data.loader)

    def _load(self, index: int, epoch: int) -> Sample | SkippedSample:
        sample = self.original(index)
        if isinstance(sample, SkippedSample):
            return sample
        image, target = sample
        return self.process(image, target, index=index, epoch=epoch)

    def original(self, index: int) -> tuple[torch.Tensor, Any] | SkippedSample:
        """Sample `index` as the dataset gives it (original image and target), or a SkippedSample for a
        bad one under on_bad_sample: skip; a dataset's own exception names the dataset."""
        try:
            return self.dataset[index]
        except BadSampleError as exc:
            if self.skip_bad:
                return SkippedSample(index, str(exc))
            raise
        except ToolkitError:
            raise
        except Exception as exc:
            raise component_failure(self.dataset, f"reading sample {index}", exc) from exc

    def augment(
        self, image: torch.Tensor, target: Any, *, index: int, epoch: int
    ) -> tuple[torch.Tensor, Any]:
        """Apply the transform under the sample's own seed; return (image, target dict)."""
        height, width = image.shape[-2:]
        target = self.task.prepare_target(target)
        target["orig_size"] = torch.tensor([height, width])
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(sample_seed(self.seed, epoch, index))  # CPU only: cheap
            image, target = run_transforms(self.transform, tv_tensors.Image(image), target, index=index)
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
            "image_id": sample_image_id(target, index),
        }
        if "letterbox" in target:
            meta["letterbox"] = target["letterbox"]
        encoded = self.task.encode_target(target, self.encoder)
        return Sample(image, encoded, meta)


def sample_image_id(target: Any, index: int) -> int:
    """The id the evaluator knows a sample by: its target's `image_id`, else its index."""
    return int(target.get("image_id", index)) if isinstance(target, Mapping) else index


def run_transforms(transform: Callable[..., Any], image: Any, target: Any, *, index: int) -> Any:
    """`transform(image, target)`, step by step for a Compose: an exception from a step becomes a
    ComponentError naming it (the augmentation and its plugin)."""
    steps = transform.transforms if isinstance(transform, v2.Compose) else [transform]
    inputs = (image, target)
    for step in steps:
        try:
            inputs = step(*inputs)
        except ToolkitError:
            raise
        except Exception as exc:
            raise component_failure(step, f"transforming sample {index}", exc) from exc
    return inputs
