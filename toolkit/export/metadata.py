"""Self-describing ONNX files: everything `toolkit predict model.onnx` needs, in `metadata_props`.

Keys (all strings; JSON where the value is structured):
`toolkit.task`, `toolkit.class_names` (JSON list), `toolkit.category_ids` (JSON list: the dataset's
original ids per label, e.g. COCO's, or absent), `toolkit.input_size` (JSON [H, W]),
`toolkit.input_multiple`, `toolkit.dynamic` ("batch" or "batch,hw"), `toolkit.decoded` ("true" /
"false"), `toolkit.outputs` (JSON list of output names), `toolkit.letterbox` (JSON {"fill": 0}),
`toolkit.normalization` (JSON {"mean", "std"}: applied inside the graph), `toolkit.precision`
("fp32", "fp16", "int8"), `toolkit.version`, `toolkit.spec` (the full spec as JSON) and
`toolkit.spec_sha256`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit import __version__
from toolkit.data.categories import checked_category_ids
from toolkit.errors import ToolkitError
from toolkit.spec.models import MAX_SIDE, MIN_SIDE

PREFIX = "toolkit."


@dataclass(frozen=True)
class ModelInfo:
    """What an exported file says about itself."""

    task: str
    class_names: list[str]
    input_size: tuple[int, int]
    input_multiple: int
    dynamic: str
    decoded: bool
    outputs: list[str]
    precision: str
    category_ids: list[int] | None
    spec: dict[str, Any]
    version: str

    @property
    def dynamic_hw(self) -> bool:
        return "hw" in self.dynamic.split(",")


def build_metadata(
    *,
    task: str,
    class_names: Sequence[str],
    input_size: tuple[int, int],
    input_multiple: int,
    dynamic: str,
    decoded: bool,
    outputs: Sequence[str],
    normalization: Mapping[str, Sequence[float]],
    spec: Mapping[str, Any],
    category_ids: Sequence[int] | None = None,
    precision: str = "fp32",
) -> dict[str, str]:
    """The `metadata_props` of an export, as strings."""

    spec_json = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    entries: dict[str, Any] = {
        "task": task,
        "class_names": json.dumps(list(class_names)),
        "input_size": json.dumps([int(input_size[0]), int(input_size[1])]),
        "input_multiple": str(int(input_multiple)),
        "dynamic": dynamic,
        "decoded": "true" if decoded else "false",
        "outputs": json.dumps(list(outputs)),
        "letterbox": json.dumps({"fill": 0}),
        "normalization": json.dumps({k: list(v) for k, v in normalization.items()}),
        "precision": precision,
        "version": __version__,
        "spec": spec_json,
        "spec_sha256": hashlib.sha256(spec_json.encode()).hexdigest(),
    }
    if category_ids is not None:
        entries["category_ids"] = json.dumps([int(i) for i in category_ids])
    return {PREFIX + key: str(value) for key, value in entries.items()}


def write_metadata(model_proto: Any, metadata: Mapping[str, str]) -> None:
    """Set (replace) the entries of an `onnx.ModelProto`'s `metadata_props`."""
    kept = [p for p in model_proto.metadata_props if p.key not in metadata]
    del model_proto.metadata_props[:]
    model_proto.metadata_props.extend(kept)
    for key, value in metadata.items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value


#: the most class names a file may list (bounded like every size read from a file)
MAX_CLASSES = 100_000


def read_info(metadata: Mapping[str, str], source: str) -> ModelInfo:
    """ModelInfo from a file's metadata_props (a dict); ToolkitError when it is not a toolkit export or
    when a value is damaged or out of bounds (sizes as specs bound them, a non-empty class list)."""
    if PREFIX + "task" not in metadata:
        raise ToolkitError(
            f"{source} has no toolkit metadata (toolkit.task); export it with 'toolkit export', or run it "
            "with onnxruntime directly"
        )
    try:
        raw = {key[len(PREFIX) :]: value for key, value in metadata.items() if key.startswith(PREFIX)}
        height, width = json.loads(raw["input_size"])
        class_names = json.loads(raw["class_names"])
        info = ModelInfo(
            task=raw["task"],
            class_names=list(class_names) if isinstance(class_names, list) else class_names,
            input_size=(_int(height), _int(width)),
            input_multiple=_int(raw["input_multiple"]),
            dynamic=raw.get("dynamic", "batch"),
            decoded=raw.get("decoded", "true") == "true",
            outputs=list(json.loads(raw["outputs"])),
            precision=raw.get("precision", "fp32"),
            category_ids=json.loads(raw["category_ids"]) if "category_ids" in raw else None,
            spec=json.loads(raw.get("spec", "{}")),
            version=raw.get("version", "?"),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise ToolkitError(
            f"{source}: damaged toolkit metadata ({type(exc).__name__}: {exc}); export it again"
        ) from None
    problem = _bounds_problem(info)
    if problem:
        raise ToolkitError(f"{source}: damaged toolkit metadata ({problem}); export it again")

    checked_category_ids(info.category_ids, len(info.class_names), f"{source} (toolkit.category_ids)")
    return info


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{value!r} is not an integer")
    return int(value)


def _bounds_problem(info: ModelInfo) -> str:

    names = info.class_names
    if not isinstance(names, list) or not 1 <= len(names) <= MAX_CLASSES:
        count = len(names) if isinstance(names, list) else repr(names)
        return f"toolkit.class_names must list 1 to {MAX_CLASSES} class names, it has {count}"
    if not all(isinstance(n, str) and n.strip() for n in names) or len(set(names)) != len(names):
        return "toolkit.class_names must be distinct, non-empty names"
    if not all(MIN_SIDE <= side <= MAX_SIDE for side in info.input_size):
        return f"toolkit.input_size {list(info.input_size)} is outside [{MIN_SIDE}, {MAX_SIDE}] per side"
    if not 1 <= info.input_multiple <= MAX_SIDE:
        return f"toolkit.input_multiple {info.input_multiple} is outside [1, {MAX_SIDE}]"
    if info.dynamic not in ("batch", "batch,hw"):
        return f"toolkit.dynamic is {info.dynamic!r}, not 'batch' or 'batch,hw'"
    if not info.outputs or not all(isinstance(o, str) for o in info.outputs):
        return "toolkit.outputs must list the graph's output names"
    return ""


def graph_problem(info: ModelInfo, proto: Any) -> str:
    """Where the metadata contradicts the graph (its outputs, its input's fixed sizes); empty if nowhere."""
    outputs = [output.name for output in proto.graph.output]
    if outputs != list(info.outputs):
        return f"toolkit.outputs {info.outputs} but the graph outputs {outputs}"
    inputs = [i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    if len(inputs) != 1:
        return f"the graph has {len(inputs)} inputs; a toolkit export has one (images)"
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    expected = [None, 3, *(() if info.dynamic_hw else info.input_size)]
    if len(dims) != 4:
        return f"the graph's input has {len(dims)} dimensions, not [N, 3, H, W]"
    for index, (have, want) in enumerate(zip(dims, expected, strict=False)):
        if have is not None and want is not None and have != want:
            size = list(info.input_size)
            return f"toolkit.input_size {size} but the graph's input is {dims} (dimension {index})"
    return ""


def read_file_info(path: str | Path) -> ModelInfo:
    """ModelInfo of an exported file (reads the metadata and graph without loading the weights); a
    ToolkitError when the file is not a toolkit export or its metadata contradicts its graph."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ToolkitError(f"ONNX file {str(path)!r} not found; check the path")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ToolkitError(
            f"cannot read {str(path)!r} as an ONNX file: {type(exc).__name__}: {reason}"
        ) from None
    info = read_info({p.key: p.value for p in proto.metadata_props}, str(path))
    problem = graph_problem(info, proto)
    if problem:
        raise ToolkitError(f"{path}: its metadata contradicts its graph ({problem}); export it again")
    return info
