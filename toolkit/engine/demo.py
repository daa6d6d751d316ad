"""`toolkit demo`: the main job offline on the embedded `shapes` data (the fine-tuning comparison:
`toolkit.engine.finetune_demo`)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from toolkit.build import build_dataset
from toolkit.engine.report import format_summary
from toolkit.engine.trainer import RunSummary, train
from toolkit.engine.visualize import save_predictions
from toolkit.errors import ToolkitError
from toolkit.loading import load_model
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec

DETECTION_CONFIG = Path("configs/demo_centernet_shapes.yaml")


def _config(path: Path | None, default: Path) -> Path:
    config = path or default
    if not config.is_file():
        raise ToolkitError(
            f"demo config {str(config)!r} not found; run from the repository root or pass --config"
        )
    return config


def _fresh(directory: Path) -> Path:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    return directory


def run_detection_demo(
    out: Path, *, plugins: PluginManager, config: Path | None = None, overrides: list[str] | None = None
) -> RunSummary:
    """Train CenterNet-ResNet18 from scratch on shapes, evaluate COCO mAP, draw predictions, plot curves."""
    spec = load_spec(_config(config, DETECTION_CONFIG), overrides or [], plugins=plugins)
    run_dir = _fresh(out / "detection")
    started = time.perf_counter()
    summary = train(spec, out_dir=run_dir, plugins=plugins)
    model = load_model(run_dir / "best.pt", plugins=plugins)  # what a user does with a trained run
    val = build_dataset(spec, "val", plugins=plugins)
    summary.files["predictions"] = str(save_predictions(model, val, run_dir / "predictions.png"))
    print(format_summary(summary))
    from toolkit.export.demo_step import export_and_compare

    print("\nONNX:")
    for line in export_and_compare(
        model, spec, run_dir, val, plugins=plugins, torch_metrics=summary.final_metrics
    ):
        print(line)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; outputs in {run_dir}")
    return summary
