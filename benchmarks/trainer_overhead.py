"""Images/s of toolkit's training step against a minimal hand-written PyTorch loop, printed as JSON.

Both run the same model, loss, optimizer, DataLoader (data, batch, workers) and number of steps, in
the same process, alternating, best of N rounds. Goal: ratio (toolkit / hand loop) >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from toolkit.build import Builder, build_model
from toolkit.data.loader import make_loader
from toolkit.engine.optim import build_optimizer, build_scheduler
from toolkit.engine.trainer import Trainer
from toolkit.kinds import LOSS
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec

REPO = Path(__file__).resolve().parents[1]


def hand_loop(spec, steps: int) -> float:  # type: ignore[no-untyped-def]
    """The baseline: iterate the loader, forward, loss, backward, step. Returns images/s."""
    torch.manual_seed(0)
    plugins = PluginManager()
    model = build_model(spec, plugins=plugins)
    loss_fn = Builder(plugins).component(
        LOSS, spec.train.loss, path="train.loss", num_classes=spec.model.num_classes
    )
    optimizer = build_optimizer(model, spec.train)
    dataset = Builder(plugins).split(spec, model, "train").processed
    loader = make_loader(dataset, spec.data, shuffle=True)
    scheduler = build_scheduler(optimizer, spec.train, len(loader))
    model.train()
    start, seen = time.perf_counter(), 0
    for batch in loader:
        outputs = model(batch.images)
        loss = loss_fn(outputs, batch.targets)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        seen += len(batch)
    return seen / (time.perf_counter() - start)


def toolkit_loop(spec, out: Path) -> float:  # type: ignore[no-untyped-def]
    """The same epoch through toolkit's Trainer (logging, checks, progress off). Returns images/s."""
    torch.manual_seed(0)
    trainer = Trainer(spec, Builder(), out_dir=out, show_progress=False)
    trainer._setup()
    start = time.perf_counter()
    seen, _ = trainer._train_epoch()
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    torch.set_num_threads(2)
    spec = load_spec(
        REPO / "configs/centernet_resnet18_shapes.yaml",
        [
            f"model.input_size={args.size}",
            f"data.train.image_size={args.size}",
            f"data.train.length={args.steps * args.batch}",
            f"data.batch_size={args.batch}",
            "data.val=null",
            "train.loss={type: centernet}",
            "train.threads=2",
        ],
    )
    hand, toolkit = [], []
    with tempfile.TemporaryDirectory() as temp:
        for round_ in range(args.rounds):
            hand.append(hand_loop(spec, args.steps))
            toolkit.append(toolkit_loop(spec, Path(temp) / f"run{round_}"))
    print(
        json.dumps(
            {
                "benchmark": "trainer_overhead",
                "steps": args.steps,
                "batch": args.batch,
                "input": args.size,
                "hand_loop_images_per_s": round(max(hand), 2),
                "toolkit_images_per_s": round(max(toolkit), 2),
                "ratio": round(max(toolkit) / max(hand), 3),
                "rounds": {"hand": [round(x, 2) for x in hand], "toolkit": [round(x, 2) for x in toolkit]},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
