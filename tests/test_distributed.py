"""torchrun with 2 CPU processes (gloo) trains like one process with the combined batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import FIXTURE_PLUGINS, REPO, run_cli

SPEC = {
    "plugins": ["fixture_tiny"],
    "model": {
        "backbone": {"type": "tiny", "width": 8},
        "head": {"type": "classification", "dropout": 0.0},
        "input_size": 64,
        "class_names": ["absent", "present"],
    },
    "data": {
        "train": {"type": "shapes", "task": "classification", "length": 16, "image_size": 64, "seed": 0},
        "val": {"type": "shapes", "task": "classification", "length": 8, "image_size": 64, "seed": 1},
        "augment": [{"type": "hflip"}, {"type": "resize"}],
        "batch_size": 8,
        "num_workers": 1,
    },
    "train": {
        "epochs": 2,
        "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9},
        "schedule": {"type": "constant"},
        "log_interval": 1,
        "device": "cpu",
        "threads": 1,
    },
}


def records(run: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC))
    single = run_cli("train", str(spec_path), "--out", str(tmp_path / "single"), pythonpath=[FIXTURE_PLUGINS])
    assert single.returncode == 0, single.stderr

    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOOLKIT_")}
    environment["PYTHONPATH"] = str(FIXTURE_PLUGINS)
    environment["OMP_NUM_THREADS"] = "1"
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "toolkit", "train", str(spec_path), "--out", str(tmp_path / "ddp"), "data.batch_size=4"],
        capture_output=True, text=True, cwd=REPO, env=environment, timeout=600,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    single_train, ddp_train = records(tmp_path / "single", "train"), records(tmp_path / "ddp", "train")
    assert [r["step"] for r in ddp_train] == [r["step"] for r in single_train] == [1, 2, 3, 4]
    for one, two in zip(single_train, ddp_train, strict=True):
        assert two["loss"]["loss"] == pytest.approx(one["loss"]["loss"], rel=1e-5, abs=1e-6)
    assert len(records(tmp_path / "ddp", "val")) == 2, "rank 0 alone evaluates and logs"
    one = torch.load(tmp_path / "single" / "last.pt", weights_only=True)["model"]
    two = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)["model"]
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)


RESNET_CENTERNET = {
    "model": {
        "backbone": {"type": "resnet18", "frozen_stages": 0},
        "head": {"type": "centernet", "neck_channels": [32, 16, 16], "head_conv": 8, "max_detections": 10},
        "input_size": 64,
        "class_names": ["circle", "square", "triangle"],
    },
    "data": {
        "train": {"type": "shapes", "length": 4, "image_size": 64, "seed": 0},
        "augment": [{"type": "hflip"}, {"type": "resize"}],
        "batch_size": 2,  # per process: the global batch is the whole dataset
        "num_workers": 0,
    },
    "train": {
        "epochs": 1,
        "optimizer": {"type": "sgd", "lr": 0.01},
        "schedule": {"type": "constant"},
        "log_interval": 1,
        "device": "cpu",
        "threads": 1,
    },
}


def _torchrun(spec_path: Path, out: Path, *overrides: str) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOOLKIT_")}
    environment["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "toolkit", "train", str(spec_path), "--out", str(out), "--no-progress", *overrides],
        capture_output=True, text=True, cwd=REPO, env=environment, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def _batchnorm_statistics_after_one_step(indices: list[int]) -> dict[str, torch.Tensor]:
    """The running statistics a single process gets from one training forward pass over the
    given samples of epoch 0, starting from the trainer's initialization (seed 0)."""
    import random

    from toolkit.build import Builder, build_model
    from toolkit.data.loader import collate
    from toolkit.plugins import PluginManager
    from toolkit.spec import load_spec

    manager = PluginManager()
    spec = load_spec(RESNET_CENTERNET, plugins=manager)
    torch.manual_seed(0)  # as the trainer seeds before building
    random.seed(0)
    model = build_model(spec, plugins=manager).train()
    dataset = Builder(manager).split(spec, model, "train").processed
    batch = collate([dataset[(index, 0)] for index in indices])
    with torch.no_grad():
        model(batch.images)
    return {k: v for k, v in model.state_dict().items() if "running_" in k}


@pytest.mark.slow
def test_sync_bn_computes_batchnorm_statistics_over_the_global_batch(tmp_path: Path) -> None:
    """ResNet-18 + CenterNet under 2 processes, one step: with train.sync_bn the BatchNorm running
    statistics are those of the whole global batch; without it, those of rank 0's half alone."""
    from toolkit.data.loader import EpochSampler

    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(RESNET_CENTERNET))
    _torchrun(spec_path, tmp_path / "sync", "train.sync_bn=true")
    _torchrun(spec_path, tmp_path / "local")
    synced = torch.load(tmp_path / "sync" / "last.pt", weights_only=True)["model"]
    local = torch.load(tmp_path / "local" / "last.pt", weights_only=True)["model"]
    rank0 = [index for index, _ in EpochSampler(4, shuffle=True, seed=0, rank=0, world_size=2)]
    everything = _batchnorm_statistics_after_one_step([0, 1, 2, 3])
    half = _batchnorm_statistics_after_one_step(rank0)
    assert len(everything) == 2 * sum(1 for k in everything if k.endswith("running_mean")) > 40
    for key, value in everything.items():
        torch.testing.assert_close(synced[key], value, rtol=1e-4, atol=1e-5, msg=key)
        torch.testing.assert_close(local[key], half[key], rtol=1e-4, atol=1e-5, msg=key)
    stem = "backbone.bn1.running_var"
    assert not torch.allclose(everything[stem], half[stem], rtol=1e-3), "the halves must differ"
    assert synced["backbone.bn1.num_batches_tracked"] == 1


AT_EXIT_CHECK = """
import atexit, os, runpy, sys


def no_gloo_thread_left() -> None:  # registered first, so it runs after the toolkit's own exit work
    if not os.path.isdir("/proc/self/task"):
        return
    names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
    alive = [name for name in names if "gloo" in name]
    if alive:
        print(f"rank {os.environ.get('RANK')}: gloo threads at exit: {alive}", file=sys.stderr, flush=True)
        os._exit(3)


atexit.register(no_gloo_thread_left)
sys.argv[0] = "toolkit"
sys.path.insert(0, os.getcwd())  # as `python -m toolkit` in the repository
runpy.run_module("toolkit", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_the_process_group_is_gone_before_the_interpreter_finalizes(tmp_path: Path) -> None:
    """Alive while the interpreter finalizes, gloo's worker threads abort the process (SIGABRT,
    "terminate called without an active exception") when one releases a tensor there; the trainer's
    DDP module, freed only by the cyclic garbage collector, used to keep the group alive that long."""
    spec = {**SPEC, "data": {**SPEC["data"], "val": None}, "train": {**SPEC["train"], "epochs": 1}}
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    script = tmp_path / "toolkit_main.py"
    script.write_text(AT_EXIT_CHECK)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOOLKIT_")}
    environment["PYTHONPATH"] = str(FIXTURE_PLUGINS)
    environment["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
         "train", str(spec_path), "--out", str(tmp_path / "ddp"), "--no-progress", "data.batch_size=4"],
        capture_output=True, text=True, cwd=REPO, env=environment, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
