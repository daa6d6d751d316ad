"""DataLoaders over processed datasets: the epoch sampler, batches and collation (`toolkit.build`
builds the datasets and transforms).

The sampler yields (index, epoch) keys: workers need no shared state to know the epoch, and every
sample's augmentation is seeded from (data.seed, epoch, index), so batches do not depend on the
number of workers. With `world_size > 1` each rank gets its own shard (DistributedSampler-style).

A user error raised while a worker loads a sample reaches the main process inside its batch
(`Batch.error`); `ToolkitLoader` raises it there, so the message and exit code are those of a run
without workers (and not torch's "Caught ... in DataLoader worker process" with a traceback).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from toolkit.data.pipeline import FailedSample, ProcessedDataset, Sample, SkippedSample
from toolkit.errors import ToolkitError
from toolkit.spec import DataSpec


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields (index, epoch); shuffled by (seed, epoch); sharded across `world_size` ranks.

    With `indices`, only those dataset indices (in that order unless shuffled); `length` is then
    their number."""

    def __init__(
        self,
        length: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        indices: Sequence[int] | None = None,
    ) -> None:
        self.indices = None if indices is None else list(indices)
        self.length = length if self.indices is None else len(self.indices)
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.length / self.world_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        if self.indices is not None:
            order = [self.indices[position] for position in order]
        if self.world_size > 1:
            total = len(self) * self.world_size
            order = (order * math.ceil(total / max(1, len(order))))[:total]  # pad by repeating
            order = order[self.rank :: self.world_size]
        for index in order:
            yield index, self.epoch


@dataclass
class Batch:
    """Images [N,3,H,W], stacked encoded targets, per-image metadata, and skipped bad samples;
    `error`: the user error a worker met (the batch is then empty)."""

    images: torch.Tensor
    targets: dict[str, torch.Tensor]
    meta: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    error: ToolkitError | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def pin_memory(self) -> Batch:
        return Batch(
            self.images.pin_memory(),
            {k: v.pin_memory() for k, v in self.targets.items()},
            self.meta,
            self.skipped,
            self.error,
        )

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> Batch:
        return Batch(
            self.images.to(device, non_blocking=non_blocking),
            {k: v.to(device, non_blocking=non_blocking) for k, v in self.targets.items()},
            self.meta,
            self.skipped,
            self.error,
        )


def collate(samples: Sequence[Sample | SkippedSample | FailedSample]) -> Batch:
    """Stack images and encoded targets; skipped samples are counted, not batched; a failed sample
    makes an empty batch carrying its error."""
    failed = next((s for s in samples if isinstance(s, FailedSample)), None)
    if failed is not None:
        return Batch(torch.empty(0, 3, 0, 0), {}, [], [], failed.error)
    good = [s for s in samples if isinstance(s, Sample)]
    skipped = [s.reason for s in samples if isinstance(s, SkippedSample)]
    if not good:
        return Batch(torch.empty(0, 3, 0, 0), {}, [], skipped)
    images = _stack([s.image for s in good])
    targets = {key: _stack([s.targets[key] for s in good]) for key in good[0].targets}
    return Batch(images, targets, [s.meta for s in good], skipped)


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """torch.stack; inside a DataLoader worker straight into shared memory (no copy when sent)."""
    if torch.utils.data.get_worker_info() is None:
        return torch.stack(tensors)
    first = tensors[0]
    storage = first.untyped_storage()._new_shared(len(tensors) * first.numel() * first.element_size())
    out = first.new_empty(0).set_(storage).view(len(tensors), *first.shape)
    return torch.stack(tensors, out=out)


class ToolkitLoader(DataLoader):
    """A DataLoader whose iteration raises, in the main process, the user error a worker met."""

    def __iter__(self) -> Iterator[Batch]:  # type: ignore[override]
        for batch in super().__iter__():
            if batch.error is not None:
                raise batch.error
            yield batch


def make_loader(
    dataset: ProcessedDataset,
    data: DataSpec,
    *,
    shuffle: bool,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    num_workers: int | None = None,
    indices: Sequence[int] | None = None,
) -> DataLoader:
    """A ToolkitLoader over `dataset` (or only its `indices`) with the spec's batch size, workers and
    memory pinning."""
    workers = data.num_workers if num_workers is None else num_workers
    pin = data.pin_memory if data.pin_memory is not None else torch.device(device).type == "cuda"
    return ToolkitLoader(
        dataset,
        batch_size=batch_size or data.batch_size,
        sampler=EpochSampler(
            len(dataset), shuffle=shuffle, seed=data.seed, rank=rank, world_size=world_size, indices=indices
        ),
        collate_fn=collate,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=data.persistent_workers and workers > 0,
        generator=torch.Generator().manual_seed(data.seed),  # worker seeds never draw from the global RNG
    )
