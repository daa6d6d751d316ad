"""`toolkit demo`: the main job offline on the embedded `shapes` data, and the fine-tuning comparison."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import torch

from toolkit.build import build_dataset
from toolkit.engine.report import format_summary
from toolkit.engine.trainer import RunSummary, train
from toolkit.engine.visualize import save_predictions
from toolkit.errors import ToolkitError
from toolkit.loading import load_model
from toolkit.plugins import PluginManager
from toolkit.spec import load_spec
from toolkit.table import format_table

DETECTION_CONFIG = Path("configs/demo_centernet_shapes.yaml")
FINETUNE_CONFIG = Path("configs/demo_finetune_classifier.yaml")


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


def run_finetune_demo(
    out: Path,
    *,
    plugins: PluginManager,
    weights: Path | None = None,
    config: Path | None = None,
    overrides: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Presence/absence classification fine-tuned with a frozen and with an unfrozen backbone,
    both from the same starting weights (by default the detection demo's backbone)."""
    weights = weights or out / "detection" / "best.pt"
    if not weights.is_file():
        raise ToolkitError(
            f"starting weights {str(weights)!r} not found; run 'toolkit demo' first (its detection "
            "backbone is the starting point) or pass --weights"
        )
    rows = []
    for name, frozen_stages in (("frozen", 4), ("unfrozen", 0)):
        spec = load_spec(
            _config(config, FINETUNE_CONFIG),
            [
                *(overrides or []),
                f"model.backbone.pretrained={weights}",
                f"model.backbone.frozen_stages={frozen_stages}",
            ],
            plugins=plugins,
        )
        torch.manual_seed(0)
        summary = train(spec, out_dir=_fresh(out / f"finetune_{name}"), plugins=plugins, show_progress=True)
        rows.append(
            {
                "variant": name,
                "accuracy": summary.final_metrics.get("accuracy", float("nan")),
                "trainable": summary.trainable_parameters,
                "frozen": summary.frozen_parameters,
                "seconds": summary.train_seconds,
            }
        )
    print(
        format_table(
            ["backbone", "accuracy", "trainable params", "frozen params", "train time (s)"],
            [
                [
                    r["variant"],
                    f"{r['accuracy']:.4f}",
                    f"{r['trainable']:,}",
                    f"{r['frozen']:,}",
                    f"{r['seconds']:.1f}",
                ]
                for r in rows
            ],
        )
    )
    return rows
