"""Reduced-precision copies of an exported file: fp16 (`convert_fp16`) and static int8 (`quantize_int8`).

Both keep the file's float32 input (`images`) and outputs (int64 outputs stay int64), copy its toolkit
metadata and set `toolkit.precision`; both results pass `onnx.checker.check_model(full_check=True)` and
run on onnxruntime's CPU execution provider. Only what ships with onnxruntime is used
(`onnxruntime.transformers.float16`, `onnxruntime.quantization`).

What stays float32 in both: the *float tail* (`float_tail`), i.e. everything after the last heavy layer
(Conv, ConvTranspose, MatMul, Gemm) -- a CenterNet's sigmoid, max-pool peak test, TopK, gathers and box
arithmetic, a classifier's softmax -- and, by default, those last heavy layers themselves (the
heatmap/size/offset convolutions, the classifier's Gemm). They cost little, and in reduced precision
they cost the most accuracy: float16 heatmap logits form plateaus on which the max-pool peak test keeps
or drops neighbours arbitrarily; float16 box arithmetic rounds corners beyond 256 px to 0.25 px steps
(onnxruntime's converter alone, blocking TopK/Min/Max, gave 0.13 px box errors at 512x512, this 0.006
px); int8 output convolutions raise a trained CenterNet's score error from 0.02 to 0.09.

fp16: float16 weights and compute elsewhere, with casts at the float32 boundaries.
int8: onnxruntime static quantization, QDQ format, per-channel symmetric int8 weights and uint8
activations calibrated (MinMax) on the given batches; only Conv, MatMul and Gemm are quantized. On the
CPU execution provider the QDQ pairs fuse into integer kernels (QLinearConv, ...).
"""

from __future__ import annotations

import heapq
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.export.metadata import PREFIX, write_metadata

PRECISION_KEY = PREFIX + "precision"

#: fp16 against torch fp32: largest difference of the decoded `scores` (the same peaks) and of a
#: classifier's `probs` (about 3x what was measured: docs/export.md, "fp16 tolerances").
FP16_SCORE_TOLERANCE = 1e-3
#: fp16 against torch fp32: largest difference of a decoded box, as a fraction of max(H, W): room for
#: large boxes, whose size carries float16's 2^-11 relative rounding of the features that feed the
#: (float32) size convolution (docs/export.md).
FP16_BOX_TOLERANCE_FRACTION = 5e-4

#: The layers that carry the compute; what follows the last of them stays float32 (see `float_tail`).
HEAVY_OPS: tuple[str, ...] = ("Conv", "ConvTranspose", "MatMul", "Gemm")
#: The ops int8 quantizes; the rest (normalization, residual adds, upsampling, decode) stays float32.
#: ConvTranspose is left out: onnxruntime's CPU EP has no integer kernel for it, and its QDQ form runs
#: slower than float32 (docs/export.md, int8).
INT8_OP_TYPES: tuple[str, ...] = ("Conv", "MatMul", "Gemm")


# -- graph helpers -------------------------------------------------------------------------------
def _subgraph_inputs(node: Any) -> set[str]:
    """Names a node's subgraphs (If, Loop, Scan) read from the enclosing scope."""
    import onnx

    names: set[str] = set()
    for attribute in node.attribute:
        graphs = []
        if attribute.type == onnx.AttributeProto.GRAPH:
            graphs = [attribute.g]
        elif attribute.type == onnx.AttributeProto.GRAPHS:
            graphs = list(attribute.graphs)
        for graph in graphs:
            local = {i.name for i in graph.input} | {i.name for i in graph.initializer}
            for inner in graph.node:
                local.update(inner.output)
            for inner in graph.node:
                names.update(n for n in [*inner.input, *_subgraph_inputs(inner)] if n and n not in local)
    return names


def sort_topologically(graph: Any) -> None:
    """Reorder `graph.node` in place so every node comes after the nodes producing its inputs
    (Kahn's algorithm, keeping the original order among ready nodes). ToolkitError on a cycle."""
    nodes = list(graph.node)
    producer: dict[str, int] = {}
    for index, node in enumerate(nodes):
        for name in node.output:
            if name:
                producer[name] = index
    waiting = [0] * len(nodes)
    consumers: list[list[int]] = [[] for _ in nodes]
    for index, node in enumerate(nodes):
        sources = {producer[n] for n in [*node.input, *_subgraph_inputs(node)] if n in producer}
        sources.discard(index)
        waiting[index] = len(sources)
        for source in sources:
            consumers[source].append(index)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for consumer in consumers[index]:
            waiting[consumer] -= 1
            if waiting[consumer] == 0:
                heapq.heappush(ready, consumer)
    if len(order) != len(nodes):
        raise ToolkitError("the converted ONNX graph has a cycle; it cannot be sorted topologically")
    del graph.node[:]
    graph.node.extend(nodes[index] for index in order)


def float_tail(graph: Any, heavy_ops: Iterable[str] = HEAVY_OPS, *, output_layers: bool = True) -> list[str]:
    """Names of the nodes after the last heavy layer: walking back from the graph outputs, every node
    reached without crossing a node of `heavy_ops` (the decode: sigmoid, max-pool peaks, TopK, gathers,
    box arithmetic; a classifier's softmax), plus, with `output_layers`, the heavy nodes where the walk
    stops (a CenterNet's heatmap/size/offset convolutions, a classifier's final Gemm)."""
    heavy = set(heavy_ops)
    producer = {name: node for node in graph.node for name in node.output}
    found: list[str] = []
    seen: set[str] = set()
    stack = [v.name for v in graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in heavy:
            if output_layers:
                found.append(node.name)
            continue
        found.append(node.name)
        stack.extend(n for n in [*node.input, *_subgraph_inputs(node)] if n)
    return found


def _name_nodes(graph: Any) -> None:
    """Give unnamed nodes unique names (block lists and quantization exclusions go by name)."""
    used = {node.name for node in graph.node if node.name}
    for index, node in enumerate(graph.node):
        if not node.name:
            name = f"{node.op_type.lower()}_{index}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


def drop_cast_round_trips(graph: Any) -> int:
    """Skip `Cast(to=float16) -> Cast(to=float32)` pairs on float32 tensors: their consumers read the
    float32 tensor itself (the converter inserts such pairs between blocked nodes, which would round
    the float32 decode to float16 between every op). Types come from `graph.value_info` (run shape
    inference first); a tensor of unknown type is left alone. Dead casts are removed. Returns the
    pairs skipped."""
    import onnx

    def cast_to(node: Any) -> int | None:
        if node.op_type != "Cast":
            return None
        return next((a.i for a in node.attribute if a.name == "to"), None)

    producer = {name: node for node in graph.node for name in node.output}
    float32 = {v.name for v in [*graph.input, *graph.value_info] if v.type.tensor_type.elem_type == 1}
    float32 |= {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    float32 |= {n.output[0] for n in graph.node if cast_to(n) == onnx.TensorProto.FLOAT}
    outputs = {v.name for v in graph.output}
    rename: dict[str, str] = {}
    skipped = 0
    for node in graph.node:
        if cast_to(node) != onnx.TensorProto.FLOAT:
            continue
        first = producer.get(node.input[0])
        if first is None or cast_to(first) != onnx.TensorProto.FLOAT16 or first.input[0] not in float32:
            continue
        skipped += 1
        if node.output[0] in outputs:  # a graph output keeps its name: the cast becomes an Identity
            node.op_type = "Identity"
            del node.attribute[:]
            node.input[0] = first.input[0]
        else:
            rename[node.output[0]] = first.input[0]
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name in rename:
                node.input[position] = rename[name]
    # remove nodes whose outputs nobody reads (the skipped casts, then the casts that fed only them)
    while True:
        used = {name for node in graph.node for name in [*node.input, *_subgraph_inputs(node)]} | outputs
        dead = [n for n in graph.node if n.op_type == "Cast" and not any(o in used for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    return skipped


def _finish(model: Any, source: Any, dst: Path, precision: str) -> Path:
    """Give `model` exactly `source`'s metadata with the precision set; check it; save it to `dst`."""
    import onnx

    metadata = {p.key: p.value for p in source.metadata_props}
    metadata[PRECISION_KEY] = precision
    del model.metadata_props[:]  # the quantizer's own entries (onnx.quant.pre_process, ...) go
    write_metadata(model, metadata)
    if not model.producer_name:
        model.producer_name = source.producer_name
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ToolkitError(
            f"the {precision} model fails the ONNX checker: {type(exc).__name__}: {exc}"
        ) from None
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return dst


def _load(src: Path) -> Any:
    import onnx

    src = Path(src)
    if not src.is_file():
        raise ToolkitError(f"ONNX file {str(src)!r} not found; check the path")
    return onnx.load(str(src))


def _float_io(model: Any) -> list[str]:
    """Names of the model's float32 inputs and outputs."""
    import onnx

    values = [*model.graph.input, *model.graph.output]
    return [v.name for v in values if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT]


# -- fp16 ----------------------------------------------------------------------------------------
def convert_fp16(src: str | Path, dst: str | Path, *, float_output_layers: bool = True) -> Path:
    """fp16 copy of the exported file `src` at `dst`: float16 weights and compute, float32 input and
    outputs. The decode after the last heavy layer stays float32, and with `float_output_layers` so do
    the output layers themselves (see `float_tail`): cheap, and it keeps a near-flat heatmap's peaks
    (max-pool equality) from merging into float16 plateaus. Metadata copied, `toolkit.precision` "fp16"."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    source = _load(Path(src))
    model = onnx.ModelProto()
    model.CopyFrom(source)
    _name_nodes(model.graph)
    converted = convert_float_to_float16(
        model,
        keep_io_types=_float_io(model),
        op_block_list=None,  # onnxruntime's default list: TopK, Min, Max, Range, NonMaxSuppression, ...
        node_block_list=float_tail(model.graph, output_layers=float_output_layers),
    )
    # the converter appends the input casts at the end of the node list, and leaves the value_info of
    # the converted initializers float32: sort, and infer the intermediate types again
    sort_topologically(converted.graph)
    del converted.graph.value_info[:]
    converted = onnx.shape_inference.infer_shapes(converted)
    if drop_cast_round_trips(converted.graph):
        del converted.graph.value_info[:]
        converted = onnx.shape_inference.infer_shapes(converted)
    return _finish(converted, source, Path(dst), "fp16")


# -- int8 ----------------------------------------------------------------------------------------
def _calibration_batches(calibration: Iterable[Any]) -> list[np.ndarray]:
    """The calibration batches as contiguous float32 [N,3,H,W] arrays; ToolkitError when none or odd."""
    batches = []
    for index, batch in enumerate(calibration):
        array = np.ascontiguousarray(np.asarray(batch, dtype=np.float32))
        if array.ndim != 4 or array.shape[1] != 3 or array.shape[0] < 1:
            raise ToolkitError(
                f"int8 calibration batch {index} has shape {tuple(array.shape)}; expected float32 [N,3,H,W] "
                "images in [0, 1], letterboxed like the model's input (toolkit.inference.preprocess)"
            )
        if not np.isfinite(array).all():
            raise ToolkitError(f"int8 calibration batch {index} holds NaN or infinite values")
        batches.append(array)
    if not batches:
        raise ToolkitError("int8 calibration got no batches; pass some float32 [N,3,H,W] images")
    return batches


def _reader(input_name: str, batches: list[np.ndarray]) -> Any:
    """A `CalibrationDataReader` feeding `batches` to the model's one input."""
    from onnxruntime.quantization import CalibrationDataReader

    class BatchReader(CalibrationDataReader):
        def __init__(self) -> None:
            self.position = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.position >= len(batches):
                return None
            self.position += 1
            return {input_name: batches[self.position - 1]}

        def rewind(self) -> None:
            self.position = 0

    return BatchReader()


def quantize_int8(
    src: str | Path,
    dst: str | Path,
    calibration: Iterable[np.ndarray],
    *,
    op_types: Sequence[str] = INT8_OP_TYPES,
    float_output_layers: bool = True,
) -> Path:
    """Static int8 copy of `src` at `dst` (QDQ, per-channel weights), calibrated on `calibration`:
    float32 [N,3,H,W] batches in [0, 1] (letterboxed like the model's input).

    Only `op_types` are quantized, never the decode after the last heavy layer; with
    `float_output_layers` the last layers before the outputs (a CenterNet's heatmap/size/offset
    convolutions, a classifier's final Gemm) stay float too: they are cheap, and quantizing them costs
    the most accuracy (a trained CenterNet's scores: max error 0.02 instead of 0.09). Metadata copied,
    `toolkit.precision` "int8"."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    source = _load(src)
    batches = _calibration_batches(calibration)
    if len(source.graph.input) != 1:
        raise ToolkitError(
            f"{src}: int8 calibration needs a model with one input, it has {len(source.graph.input)}"
        )
    with tempfile.TemporaryDirectory(prefix="toolkit-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            # shape inference and onnxruntime's basic graph optimizations (BatchNorm folding, ...)
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
            model = onnx.load(str(prepared))
        except Exception:  # the plain file quantizes too, just with a less optimized graph
            model = onnx.load(str(src))
        _name_nodes(model.graph)
        onnx.save(model, str(prepared))
        excluded = float_tail(model.graph, {*HEAVY_OPS, *op_types}, output_layers=float_output_layers)
        reader = _reader(model.graph.input[0].name, batches)
        quantized = Path(tmp) / "quantized.onnx"
        quantize_static(
            str(prepared),
            str(quantized),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            calibrate_method=CalibrationMethod.MinMax,
        )
        result = onnx.load(str(quantized))
    sort_topologically(result.graph)
    return _finish(result, source, dst, "int8")
