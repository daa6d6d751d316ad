"""Verification of an exported file against the torch model it came from.

`onnx.checker` (full check), then onnxruntime (CPU) against torch on random inputs and on real
images (letterboxed like `predict` does), at batch 1 and batch 3, and at a second size when H, W are
dynamic. Outputs are compared by the task when it knows how (`ComparesOutputs`: detections as sets,
since TopK may order near-tied scores differently), element by element otherwise. Every measured
difference is reported, pass or fail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from toolkit.contracts import ComparesOutputs
from toolkit.data.split import new_evaluator
from toolkit.errors import ToolkitError
from toolkit.export.graph import ExportGraph
from toolkit.export.runtime import OnnxModel
from toolkit.inference import preprocess
from toolkit.model import ToolkitModel
from toolkit.table import format_table

if TYPE_CHECKING:
    from toolkit.build import Builder

FP32_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Check:
    """One comparison: which inputs, and the largest difference per output."""

    case: str
    shape: tuple[int, ...]
    differences: dict[str, float]
    tolerance: float

    @property
    def passed(self) -> bool:
        return all(value <= self.tolerance for value in self.differences.values())


@dataclass
class Verification:
    """All checks of one file; `passed` when every check is within its tolerance."""

    path: Path
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def table(self) -> str:
        names = sorted({name for check in self.checks for name in check.differences})
        rows = []
        for check in self.checks:
            measured = [f"{check.differences.get(name, 0.0):.2e}" for name in names]
            verdict = "ok" if check.passed else "MISMATCH"
            shape = "x".join(map(str, check.shape))
            rows.append([check.case, shape, *measured, f"{check.tolerance:.0e}", verdict])
        return format_table(["inputs", "shape", *(f"max |diff| {n}" for n in names), "tolerance", ""], rows)


def elementwise_differences(
    expected: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """Max absolute difference per output (shape mismatches count as infinite)."""
    result = {}
    for name, value in expected.items():
        other = actual[name]
        if value.shape != other.shape:
            result[name] = float("inf")
        elif value.size:
            result[name] = float(np.max(np.abs(value.astype(np.float64) - other.astype(np.float64))))
        else:
            result[name] = 0.0
    return result


def verification_inputs(
    model: ToolkitModel, samples: Sequence[torch.Tensor], *, dynamic_hw: bool
) -> list[tuple[str, torch.Tensor]]:
    """(case, images) pairs: random at batch 1 and 3, real images at batch 1 and 3, a second size."""
    height, width = model.input_size
    generator = torch.Generator().manual_seed(0)
    cases = [
        ("random", torch.rand(1, 3, height, width, generator=generator)),
        ("random", torch.rand(3, 3, height, width, generator=generator)),
    ]
    if samples:
        real, _ = preprocess(list(samples[:3]), model.input_size)
        cases += [("real images", real[:1]), ("real images", real)]
    if dynamic_hw:
        step = model.input_multiple
        other = (height + step, max(step, width - step) if width > step else width + 2 * step)
        cases.append(("random, other size", torch.rand(2, 3, *other, generator=generator)))
    return cases


def verify_export(
    model: ToolkitModel,
    path: str | Path,
    *,
    names: Sequence[str],
    decode: bool,
    dynamic_hw: bool,
    samples: Sequence[torch.Tensor] = (),
    tolerance: float = FP32_TOLERANCE,
) -> Verification:
    """Check `path` against `model` (see the module docstring); returns every measured difference."""
    import onnx
    import onnxruntime as ort

    path = Path(path)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ToolkitError(f"{path}: the ONNX checker rejects the file: {exc}") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    graph = ExportGraph(model.cpu().eval(), list(names), decode=decode).eval()
    result = Verification(path)
    for case, images in verification_inputs(model, samples, dynamic_hw=dynamic_hw):
        with torch.inference_mode():
            expected = {n: t.numpy() for n, t in zip(names, graph(images), strict=True)}
        actual = dict(zip(names, session.run(list(names), {"images": images.numpy()}), strict=True))
        if decode and isinstance(model.task, ComparesOutputs):
            differences = model.task.compare_outputs(expected, actual, tuple(images.shape[-2:]), tolerance)
        else:
            differences = elementwise_differences(expected, actual)
        result.checks.append(Check(case, tuple(images.shape), differences, tolerance))
    return result


def compare_metrics(
    reference: Path, candidate: Path, dataset: Any, builder: Builder, *, limit: int = 200
) -> tuple[str, float, float]:
    """The task's headline metric of two exported files on the first `limit` images of `dataset`."""

    values = []
    headline = ""
    samples = [dataset[i] for i in range(min(limit, len(dataset)))]
    for path in (reference, candidate):
        runtime = OnnxModel(path, builder=builder, provider="cpu")
        headline = runtime.task.metric_names[0]
        evaluator = new_evaluator(runtime.task, dataset, runtime.class_names)
        values.append(float(score(runtime.predict, samples, evaluator)[headline]))
    return headline, values[0], values[1]


def score(
    predict: Any, samples: Sequence[tuple[Any, Any]], evaluator: Any, *, batch: int = 16
) -> dict[str, Any]:
    """An evaluator's metrics for `predict` (a model's or a runtime's) over raw `(image, target)` samples."""
    for start in range(0, len(samples), batch):
        chunk = samples[start : start + batch]
        results = predict([image for image, _ in chunk])
        meta = [{"image_id": _image_id(target, start + i)} for i, (_, target) in enumerate(chunk)]
        evaluator.update(results, _stacked_targets([target for _, target in chunk]), meta)
    return evaluator.compute()


def _image_id(target: Any, index: int) -> int:
    return int(target["image_id"]) if isinstance(target, Mapping) and "image_id" in target else index


def _stacked_targets(targets: Sequence[Any]) -> dict[str, torch.Tensor]:
    """Label targets as the batch a loader gives (`{"label": [N]}`); box targets need none (the
    evaluator reads the dataset's ground truth)."""
    if targets and not isinstance(targets[0], Mapping):
        return {"label": torch.tensor([int(t) for t in targets])}
    return {}
