"""`toolkit demo`: the main job offline on the embedded `shapes` data (the fine-tuning comparison:
`toolkit.engine.finetune_demo`)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from toolkit.build import build_dataset
from toolkit.engine.report import format_run_summary
from toolkit.engine.run_dir import holds_run
from toolkit.engine.trainer import RunSummary, train
from toolkit.engine.visualize import save_predictions
from toolkit.errors import ToolkitError
from toolkit.loading import load_model
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec

DETECTION_CONFIG = Path("configs/demo_centernet_shapes.yaml")


def demo_config(path: Path | None, default: Path) -> Path:
    """`path`, else the demo's `default` config; a user error when the file is not there."""
    config = path or default
    if not config.is_file():
        raise ToolkitError(
            f"demo config {str(config)!r} not found; run from the repository root or pass --config"
        )
    return config


def fresh_run_dir(directory: Path) -> Path:
    """`directory` created empty. An earlier run there (a toolkit run folder, or an empty folder) is
    replaced; a folder holding anything else is refused: the demo never deletes the user's files."""
    if directory.exists():
        replaceable = directory.is_dir() and (holds_run(directory) or not any(directory.iterdir()))
        if not replaceable:
            raise ToolkitError(
                f"{directory} exists and is not a toolkit run the demo wrote; the demo replaces its own "
                "runs only: move it away or pass another --out"
            )
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    return directory


def run_detection_demo(
    out: Path, *, plugins: PluginManager, config: Path | None = None, overrides: list[str] | None = None
) -> RunSummary:
    """Train CenterNet-ResNet18 from scratch on shapes, evaluate COCO mAP, draw predictions, plot curves."""
    spec = load_spec(demo_config(config, DETECTION_CONFIG), overrides or [], plugins=plugins)
    run_dir = fresh_run_dir(out / "detection")
    started = time.perf_counter()
    summary = train(spec, out_dir=run_dir, plugins=plugins)
    model = load_model(run_dir / "best.pt", plugins=plugins)  # what a user does with a trained run
    val = build_dataset(spec, "val", plugins=plugins)
    summary.files["predictions"] = str(save_predictions(model, val, run_dir / "predictions.png"))
    print(format_run_summary(summary))
    from toolkit.export.demo_step import export_and_compare

    print("\nONNX:")
    for line in export_and_compare(
        model, spec, run_dir, val, plugins=plugins, torch_metrics=summary.final_metrics
    ):
        print(line)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; outputs in {run_dir}")
    return summary
