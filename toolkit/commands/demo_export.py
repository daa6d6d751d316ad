"""The demo's last step: export the trained model, verify it, run the validation images through
onnxruntime and compare its metric and latency with torch's."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from toolkit.build import Builder
from toolkit.data.categories import dataset_category_ids
from toolkit.data.split import new_evaluator
from toolkit.errors import ToolkitError
from toolkit.table import format_table

LATENCY_IMAGES = 10


def _latency_ms(predict: Any, images: list) -> float:
    """Median milliseconds per image at batch 1 (after one warm-up call)."""
    predict(images[:1])
    times = []
    for image in images:
        started = time.perf_counter()
        predict([image])
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def export_and_compare(
    model: Any,
    spec: Any,
    run_dir: Path,
    dataset: Any,
    builder: Builder,
    *,
    torch_metrics: dict[str, Any] | None = None,
) -> list[str]:
    """Export to `run_dir/model.onnx`, verify, score the validation data with onnxruntime (and with
    torch unless the run's own evaluation, `torch_metrics`, is given: the same code); report lines."""
    from toolkit.export.onnx_export import export_onnx
    from toolkit.export.runtime import OnnxModel
    from toolkit.export.verify import score, verify_export

    samples = [dataset[i] for i in range(len(dataset))]
    images = [image for image, _ in samples]
    category_ids = dataset_category_ids(dataset)
    exported = export_onnx(
        model, run_dir / "model.onnx", spec=spec.model_dump(mode="json"), category_ids=category_ids
    )
    check = verify_export(
        model, exported.path, names=exported.outputs, decode=True, dynamic_hw=False, samples=images
    )
    if not check.passed:
        raise ToolkitError(f"{exported.path} does not match the torch model:\n{check.table()}")
    runtime = OnnxModel(exported.path, builder=builder)
    metric = model.task.metric_names[0]
    scores = {"torch": float(torch_metrics[metric])} if torch_metrics and metric in torch_metrics else {}
    runs = (("torch", model.predict), ("onnxruntime", runtime.predict))
    for name, predict in [(name, predict) for name, predict in runs if name not in scores]:
        evaluator = new_evaluator(model.task, dataset, model.class_names)
        scores[name] = float(score(predict, samples, evaluator)[metric])
    latency = {
        name: _latency_ms(p, images[:LATENCY_IMAGES])
        for name, p in (("torch", model.predict), ("onnxruntime", runtime.predict))
    }
    rows = [[name, f"{scores[name]:.4f}", f"{latency[name]:.1f}"] for name in ("torch", "onnxruntime")]
    return [
        f"exported to {exported.path} ({exported.size_bytes / 1e6:.1f} MB, {exported.seconds:.1f} s; "
        f"providers {', '.join(runtime.providers)})",
        "verification against torch:",
        check.table(),
        "",
        format_table(
            ["runtime", f"{metric} ({len(samples)} validation images)", "ms per image (batch 1)"], rows
        ),
        f"onnxruntime is {latency['torch'] / max(latency['onnxruntime'], 1e-9):.2f}x torch eager",
    ]
