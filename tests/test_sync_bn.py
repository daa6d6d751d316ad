"""`train.sync_bn` (toolkit.engine.sync_bn): two DDP processes with SyncBatchNorm compute what one
process computes on the global batch: outputs, gradients of inputs and weights, running statistics."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO
from torch import nn

from toolkit.engine.sync_bn import SyncBatchNorm, convert_sync_batchnorm

WORKER = """
import gc, os, sys, warnings, torch, torch.distributed as dist
from torch import nn
sys.path.insert(0, sys.argv[3])
from test_sync_bn import make_model, make_inputs
from toolkit.engine.distributed import barrier, init_distributed, shutdown
from toolkit.engine.sync_bn import convert_sync_batchnorm

context = init_distributed(sys.argv[2])
device, rank, world = context.device, context.rank, context.world_size
model = convert_sync_batchnorm(make_model()).to(device).train()
ids = [device.index] if device.type == "cuda" else None
network = nn.parallel.DistributedDataParallel(model, device_ids=ids)
images = make_inputs().to(device)
shard = images.chunk(world)[rank].clone().requires_grad_(True)
with warnings.catch_warnings():
    warnings.simplefilter("error", FutureWarning)  # torch's deprecated collectives warn so
    warnings.simplefilter("error", DeprecationWarning)
    outputs = network(shard)
    outputs.square().mean().backward()  # each process: the mean over its half; DDP averages the halves
gathered = [torch.zeros_like(shard) for _ in range(world)]
dist.all_gather(gathered, shard.grad)
outs = [torch.zeros_like(outputs) for _ in range(world)]
dist.all_gather(outs, outputs.detach().contiguous())
if rank == 0:
    torch.save({
        "outputs": torch.cat(outs).cpu(),
        "input_grad": torch.cat(gathered).cpu(),
        "grads": {n: p.grad.cpu() for n, p in model.named_parameters()},
        "state": {k: v.cpu() for k, v in model.state_dict().items()},
    }, sys.argv[1])
barrier(context)
del network, model, outputs
gc.collect()
shutdown(context)
# Nothing may keep the group alive past its destruction: its gloo threads, alive while the
# interpreter finalizes, abort the process when one releases a tensor there (SIGABRT).
if os.path.isdir("/proc/self/task"):
    names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
    alive = [name for name in names if "gloo" in name]
    assert not alive, f"rank {rank}: gloo threads outlive destroy_process_group: {alive}"
"""


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.BatchNorm2d(4)
    )


def make_inputs() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(6, 3, 10, 10, generator=generator) * 3 + 1  # not centred: a mean to subtract


def run_two_processes(tmp_path: Path, device: str = "cpu") -> dict:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOOLKIT_")}
    environment["OMP_NUM_THREADS"] = "1"
    result_file = tmp_path / "result.pt"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
         str(result_file), device, str(Path(__file__).parent)],
        capture_output=True, text=True, cwd=REPO, env=environment, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "deprecated" not in done.stderr, done.stderr[-3000:]
    return torch.load(result_file, weights_only=True)


@pytest.mark.slow
def test_two_processes_compute_what_one_computes_on_the_global_batch(tmp_path: Path) -> None:
    got = run_two_processes(tmp_path)
    model = make_model().train()
    images = make_inputs().requires_grad_(True)
    outputs = model(images)
    outputs.square().mean().backward()
    torch.testing.assert_close(got["outputs"], outputs.detach(), rtol=1e-4, atol=1e-5)
    # each process's input gradient sums both losses (the mean over each half): twice the global mean's
    torch.testing.assert_close(got["input_grad"] / 2, images.grad, rtol=1e-4, atol=1e-6)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(got["grads"][name], parameter.grad, rtol=1e-4, atol=1e-6, msg=name)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(got["state"][key], value, rtol=1e-4, atol=1e-6, msg=key)


def test_conversion_keeps_parameters_buffers_and_keys() -> None:
    model = make_model()
    before = dict(model.named_parameters())
    keys = list(model.state_dict())
    model.eval()
    converted = convert_sync_batchnorm(model)
    assert converted is model and isinstance(model[1], SyncBatchNorm) and isinstance(model[4], SyncBatchNorm)
    assert all(before[name] is parameter for name, parameter in model.named_parameters())
    assert list(model.state_dict()) == keys and not model[1].training
    images = make_inputs()
    plain = make_model().train()
    with torch.no_grad():  # one process: the ordinary BatchNorm computation
        torch.testing.assert_close(model.train()(images), plain(images))
    torch.testing.assert_close(model[1].running_var, plain[1].running_var)
