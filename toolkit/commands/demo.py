"""`toolkit demo`: the main job offline on the embedded `shapes` data (the fine-tuning comparison:
`toolkit.commands.finetune_demo`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from toolkit.build import Builder, load_model
from toolkit.commands.demo_export import export_and_compare
from toolkit.commands.finetune_demo import run_finetune_demo
from toolkit.engine.report import format_run_summary
from toolkit.engine.run_dir import demo_config, fresh_run_dir
from toolkit.engine.trainer import RunSummary, train
from toolkit.engine.visualize import save_predictions
from toolkit.errors import ToolkitError
from toolkit.spec import load_spec

DETECTION_CONFIG = Path("configs/demo_centernet_shapes.yaml")


def run_detection_demo(
    out: Path, builder: Builder, *, config: Path | None = None, overrides: list[str] | None = None
) -> RunSummary:
    """Train CenterNet-ResNet18 from scratch on shapes, evaluate COCO mAP, draw predictions, plot curves."""
    plugins = builder.plugins
    spec = load_spec(demo_config(config, DETECTION_CONFIG), overrides or [], plugins=plugins)
    run_dir = fresh_run_dir(out / "detection")
    started = time.perf_counter()
    summary = train(spec, out_dir=run_dir, plugins=plugins)
    model = load_model(run_dir / "best.pt", plugins=plugins)  # what a user does with a trained run
    val = builder.dataset(spec, "val")
    summary.files["predictions"] = str(save_predictions(model, val, run_dir / "predictions.png"))
    print(format_run_summary(summary))

    print("\nONNX:")
    for line in export_and_compare(model, spec, run_dir, val, builder, torch_metrics=summary.final_metrics):
        print(line)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; outputs in {run_dir}")
    return summary


def run(args: argparse.Namespace) -> int:
    """`toolkit demo [--finetune]`."""
    config = Path(args.config) if args.config else None
    if args.weights and not Path(args.weights).is_file():
        raise ToolkitError(f"--weights {args.weights!r} not found; pass a weights file or leave it out")
    if args.finetune:
        weights = Path(args.weights) if args.weights else None
        run_finetune_demo(
            Path(args.out),
            Builder(args.manager),
            weights=weights,
            config=config,
            overrides=args.overrides,
            seeds=args.seeds,
        )
    else:
        run_detection_demo(Path(args.out), Builder(args.manager), config=config, overrides=args.overrides)
    return 0
