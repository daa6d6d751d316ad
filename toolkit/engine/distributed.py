"""torchrun / DistributedDataParallel support: process group from the environment, reductions."""

from __future__ import annotations

import atexit
import gc
import importlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from toolkit.errors import ToolkitError


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: rank, world size and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` -> cuda:<local rank> when CUDA is available, else cpu; `cuda:N` is checked."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ToolkitError(f"train.device is {name!r} but CUDA is not available; use device=auto or cpu")
        index = device.index if device.index is not None else local_rank
        if index >= torch.cuda.device_count():
            raise ToolkitError(f"train.device {name!r}: only {torch.cuda.device_count()} CUDA device(s) here")
        device = torch.device(f"cuda:{index}")
    return device


def init_distributed(device_name: str) -> DistContext:
    """Join the torchrun process group when WORLD_SIZE > 1 (nccl on CUDA, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        # Before the group exists: torch.distributed.nn's functions take `group=group.WORLD` as a
        # default, bound at import; imported later (DDP's constructor imports it through
        # torch._dynamo), they would keep the default group alive after destroy_process_group.
        importlib.import_module("torch.distributed.nn")
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        _collect_process_groups_at_exit()
    return DistContext(rank, world_size, local_rank, device)


def all_reduce_mean(values: torch.Tensor, context: DistContext) -> torch.Tensor:
    """Mean of `values` over all ranks (identity in a single process)."""
    if not context.distributed:
        return values
    reduced = values.detach().clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced / context.world_size


def barrier(context: DistContext) -> None:
    if context.distributed:
        dist.barrier()


def shutdown(context: DistContext) -> None:
    """Destroy the process group. torch drops its own references to it; the group itself, and with
    it gloo's worker threads, ends with the last reference (a DDP module's reducer holds one): what
    `init_distributed` imports first and `_collect_process_groups_at_exit` make that happen before
    the interpreter finalizes."""
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


_exit_collection_registered = False


def _collect_process_groups_at_exit() -> None:
    """Run the garbage collector at exit, before the interpreter finalizes (registered once).

    The trainer's DDP module is freed only by the cyclic garbage collector, and until then it keeps
    the process group alive after `destroy_process_group`. Alive during the interpreter's
    finalization, a gloo worker thread that drops the last reference to a tensor there must take
    the GIL, which Python answers with pthread_exit; unwinding through a noexcept destructor, that
    ends in `terminate called without an active exception` (SIGABRT). Collected at exit, the group
    is destroyed, its threads joined, while the interpreter is whole."""
    global _exit_collection_registered
    if not _exit_collection_registered:
        atexit.register(gc.collect)
        _exit_collection_registered = True
