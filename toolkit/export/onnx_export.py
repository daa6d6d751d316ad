"""torch -> one self-contained ONNX file (torch.onnx's dynamo exporter), with toolkit metadata."""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from toolkit.errors import ToolkitError
from toolkit.export.graph import ExportGraph, output_names
from toolkit.export.metadata import build_metadata, write_metadata
from toolkit.model import ToolkitModel

DYNAMIC_CHOICES = ("batch", "batch,hw")
MIN_OPSET = 18  # the dynamo exporter's lowest
MAX_SIDE = 4096
#: protobuf's 2 GB limit: above it the weights must go to a side file
EXTERNAL_DATA_BYTES = 1_800_000_000


@dataclass(frozen=True)
class ExportResult:
    """Where the file went, its outputs, its size and how long the export took."""

    path: Path
    outputs: list[str]
    seconds: float
    size_bytes: int


def export_onnx(
    model: ToolkitModel,
    path: str | Path,
    *,
    spec: Mapping[str, Any],
    category_ids: list[int] | None = None,
    opset: int | None = None,
    dynamic: str = "batch",
    decode: bool = True,
) -> ExportResult:
    """Export `model` (eval mode, CPU) to `path`: input `images` float32 [N,3,H,W] in [0, 1];
    outputs the task's `output_names` (decoded) or the head's raw outputs; dynamic batch, and
    dynamic H, W (multiples of the model's input multiple) with `dynamic="batch,hw"`."""
    import onnx

    if dynamic not in DYNAMIC_CHOICES:
        raise ToolkitError(f"dynamic must be one of {', '.join(DYNAMIC_CHOICES)}, got {dynamic!r}")
    path = Path(path)
    model = model.cpu().eval()
    names = output_names(model, decode=decode)
    graph = ExportGraph(model, names, decode=decode).eval()
    height, width = model.input_size
    multiple = model.input_multiple
    example = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    shapes: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=4096)}
    if dynamic == "batch,hw":
        shapes[2] = multiple * torch.export.Dim("h", min=1, max=MAX_SIDE // multiple)
        shapes[3] = multiple * torch.export.Dim("w", min=1, max=MAX_SIDE // multiple)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracing chatter
        program = torch.onnx.export(
            graph,
            (example,),
            dynamo=True,
            input_names=["images"],
            output_names=names,
            dynamic_shapes={"images": shapes},
            opset_version=opset,
            optimize=True,
            verbose=False,
            report=False,
        )
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise ToolkitError("torch.onnx.export returned nothing")
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    external = weights > EXTERNAL_DATA_BYTES
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path), external_data=external)
    proto = onnx.load(str(path), load_external_data=False)
    write_metadata(
        proto,
        build_metadata(
            task=model.task.name,
            class_names=model.class_names,
            input_size=model.input_size,
            input_multiple=multiple,
            dynamic=dynamic,
            decoded=decode,
            outputs=names,
            normalization={"mean": model.normalization.mean, "std": model.normalization.std},
            spec=spec,
            category_ids=category_ids,
        ),
    )
    onnx.save(proto, str(path))
    return ExportResult(path, names, time.perf_counter() - started, path.stat().st_size)
