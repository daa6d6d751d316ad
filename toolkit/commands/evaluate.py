"""`toolkit eval`: a model's metrics on a data split. Torch is imported after the user's mistakes
are reported."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from toolkit import strict_json
from toolkit.build import Builder
from toolkit.checkpoints import is_checkpoint, resolve_target
from toolkit.engine.report import format_metrics
from toolkit.errors import ToolkitError
from toolkit.outputs import check_no_overwrite, check_output_dir, record_written
from toolkit.predict_options import check_batch_size
from toolkit.spec import Spec, TileSpec, TrainSpec, load_spec
from toolkit.tiling import TILE_FLAGS, resolve_tiling, spec_tiling


def evaluate_model(
    model: Any,
    spec: Spec,
    builder: Builder,
    *,
    split: str = "val",
    out_dir: Path | None = None,
    show_progress: bool = False,
    tiling: TileSpec | None = None,
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Evaluate a model with its weights (`loading.resolve_target`) on the spec's data.<split>, through
    the model's preprocessing, or with `tiling` through sliced inference of the original images.
    Given `out_dir`, the evaluation's plots (and, whole images, `val_predictions.png`) are written
    there; `show_progress`: progress on stderr.

    Returns the metrics and the task's metric names (headline first).
    """
    from toolkit.engine.distributed import resolve_device
    from toolkit.engine.evaluate import evaluate, evaluate_tiled

    config = spec.train or TrainSpec()
    device = resolve_device(config.device)
    model.to(device)
    data = builder.split(spec, model, split, train=False, device=device)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    if tiling is not None:
        metrics = evaluate_tiled(model, data, tiling, out_dir=out_dir, show_progress=show_progress)
    else:
        metrics = evaluate(model, data, device, out_dir=out_dir, show_progress=show_progress)
    return metrics, tuple(model.task.metric_names)


def run(args: argparse.Namespace) -> int:
    """`toolkit eval SPEC --checkpoint CKPT | CKPT`: print (and with --out write) the metrics."""

    out = check_output_dir(args.out, "--out") if args.out else None
    if out is not None:  # the task's plots are PNGs whose names it chooses: no PNG of the user's there
        theirs = [p.name for p in out.glob("*.png")] if out.is_dir() else []
        check_no_overwrite(out, ["metrics.json", *theirs], "--out")
    if not is_checkpoint(args.spec):  # the user's mistakes before torch is imported
        if args.checkpoint is None:
            raise ToolkitError(
                f"toolkit eval {args.spec}: which weights? pass --checkpoint runs/.../best.pt, or give the "
                "checkpoint alone (toolkit eval runs/.../best.pt) to use the spec it carries"
            )
        load_spec(args.spec, args.overrides, plugins=args.manager)

    if args.batch is not None:
        check_batch_size(args.batch, option="--batch")
    builder = Builder(args.manager)
    loaded = resolve_target(args.spec, args.checkpoint, args.overrides, builder=builder, needs_data=True)
    flags = {flag: getattr(args, flag) for flag in TILE_FLAGS}
    tiling = resolve_tiling(spec_tiling(loaded.spec), flags, batch=args.batch, off=args.no_tile)
    metrics, names = evaluate_model(
        loaded.model,
        loaded.spec,
        builder,
        split=args.split,
        out_dir=out,
        show_progress=not args.no_progress,
        tiling=tiling,
    )
    if args.json:
        print(strict_json.dumps(metrics))
    else:
        print(format_metrics(metrics, names))
    if out is not None:
        (out / "metrics.json").write_text(strict_json.dumps(metrics) + "\n")
        record_written(out, ["metrics.json", *(p.name for p in out.glob("*.png"))])
    return 0
