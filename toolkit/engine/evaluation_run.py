"""`toolkit eval`: a checkpoint's metrics on a data split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from toolkit.build import build_model, build_processed_dataset, data_section
from toolkit.data.categories import checked_category_ids
from toolkit.data.loader import make_loader
from toolkit.engine.checkpoint import load_checkpoint
from toolkit.engine.distributed import resolve_device
from toolkit.engine.evaluate import evaluate
from toolkit.errors import ToolkitError
from toolkit.loading import check_class_names
from toolkit.model import ToolkitModel
from toolkit.plugins import PluginManager
from toolkit.spec import Spec, TrainSpec


def load_model_weights(
    model: torch.nn.Module, checkpoint_path: str | Path, checkpoint: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Load a run's checkpoint (read from `checkpoint_path` unless given) into `model`, with the
    dataset category ids it recorded; a mismatch names the checkpoint, counts the keys and shows the
    first few. A checkpoint trained with other class names than the model's is refused."""
    checkpoint = checkpoint if checkpoint is not None else load_checkpoint(checkpoint_path)
    class_names = getattr(model, "class_names", None)
    if class_names is not None:
        check_class_names(checkpoint, class_names, checkpoint_path)
    state = checkpoint.get("model")
    if not isinstance(state, dict):
        raise ToolkitError(
            f"checkpoint {str(checkpoint_path)!r} holds no model weights (no 'model' state dict); pass a "
            "run's best.pt or last.pt"
        )
    problem = state_dict_mismatch(model, state)
    if problem:
        raise ToolkitError(
            f"checkpoint {str(checkpoint_path)!r} does not fit the spec's model: {problem}; use the spec it "
            "was trained with (saved as spec.yaml in the run folder)"
        )
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = " ".join(str(exc).split())[:300]
        raise ToolkitError(
            f"checkpoint {str(checkpoint_path)!r} does not fit the spec's model: {first}; use the spec it "
            "was trained with (saved as spec.yaml in the run folder)"
        ) from None
    if isinstance(model, ToolkitModel):
        model.category_ids = checked_category_ids(
            checkpoint.get("category_ids"), len(model.class_names), f"checkpoint {str(checkpoint_path)!r}"
        )
    return checkpoint


def state_dict_mismatch(model: torch.nn.Module, state: dict[str, Any], shown: int = 3) -> str:
    """What keeps `state` from loading strictly into `model`, counted with the first `shown` names of
    each kind (missing, unexpected, other shape); empty text when it fits."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [
        k
        for k in own
        if k in state and isinstance(state[k], torch.Tensor) and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)):
        if keys:
            names = ", ".join(keys[:shown]) + (", ..." if len(keys) > shown else "")
            parts.append(f"{len(keys)} weight(s) {what} ({names})")
    return "; ".join(parts)


def evaluate_checkpoint(
    spec: Spec,
    checkpoint_path: str | Path,
    *,
    split: str = "val",
    out_dir: Path | None = None,
    plugins: PluginManager,
    show_progress: bool = False,
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Build the spec's model, load the checkpoint, evaluate on data.<split> (the model's preprocessing).

    A checkpoint trained with other class names than the spec's is refused. Given `out_dir`, the
    evaluation's plots and `val_predictions.png` are written there; `show_progress`: progress on stderr.

    Returns the metrics and the task's metric names (headline first).
    """
    config = spec.train or TrainSpec()
    device = resolve_device(config.device)
    checkpoint = load_checkpoint(checkpoint_path)
    check_class_names(checkpoint, spec.model.class_names, checkpoint_path)
    model = build_model(spec, plugins=plugins)
    load_model_weights(model, checkpoint_path, checkpoint)
    model.to(device)
    dataset = build_processed_dataset(spec, model, split, train=False, plugins=plugins)
    loader = make_loader(dataset, data_section(spec), shuffle=False, device=device)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    metrics = evaluate(model, loader, device, out_dir=out_dir, show_progress=show_progress)
    return metrics, tuple(model.task.metric_names)
