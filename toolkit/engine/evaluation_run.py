"""`toolkit eval`: a model's metrics on a data split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit.build import build_processed_dataset, data_section
from toolkit.data.loader import make_loader
from toolkit.engine.distributed import resolve_device
from toolkit.engine.evaluate import evaluate
from toolkit.plugins import PluginManager
from toolkit.spec import Spec, TrainSpec


def evaluate_model(
    model: Any,
    spec: Spec,
    *,
    split: str = "val",
    out_dir: Path | None = None,
    plugins: PluginManager,
    show_progress: bool = False,
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Evaluate a model with its weights (`loading.resolve_target`) on the spec's data.<split>, through
    the model's preprocessing. Given `out_dir`, the evaluation's plots and `val_predictions.png` are
    written there; `show_progress`: progress on stderr.

    Returns the metrics and the task's metric names (headline first).
    """
    config = spec.train or TrainSpec()
    device = resolve_device(config.device)
    model.to(device)
    dataset = build_processed_dataset(spec, model, split, train=False, plugins=plugins)
    loader = make_loader(dataset, data_section(spec), shuffle=False, device=device)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    metrics = evaluate(model, loader, device, out_dir=out_dir, show_progress=show_progress)
    return metrics, tuple(model.task.metric_names)
