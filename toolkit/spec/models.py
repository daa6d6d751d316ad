"""The static spec classes user code type-hints: `Spec` and its `model` and `data` sections.

`toolkit.spec.derived` subclasses them so that every component reference validates against the
plugin registries; `toolkit.spec.load` reads, overrides and validates files.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)

from toolkit.spec.base import ComponentSpec, StrictModel
from toolkit.spec.train import TrainSpec

MIN_SIDE, MAX_SIDE = 8, 4096


def _square(value: Any) -> Any:
    return [value, value] if isinstance(value, int) and not isinstance(value, bool) else value


def _check_unique(names: list[str]) -> list[str]:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"class name {name!r} appears twice; class names must be unique")
        seen.add(name)
    return names


Side = Annotated[int, Field(ge=MIN_SIDE, le=MAX_SIDE)]


def _input_size_schema(schema: dict[str, Any]) -> None:
    """JSON Schema of `input_size`: one int (square) or [height, width] (pydantic's is the pair only)."""
    side = {"type": "integer", "minimum": MIN_SIDE, "maximum": MAX_SIDE}
    for key in ("type", "prefixItems", "items", "minItems", "maxItems"):
        schema.pop(key, None)
    schema["oneOf"] = [side, {"type": "array", "prefixItems": [side, side], "minItems": 2, "maxItems": 2}]


InputSize = Annotated[
    tuple[Side, Side],
    BeforeValidator(_square),
    Field(
        description="model input [height, width] or one int (square); each side a multiple of the "
        "model's input multiple (the largest stride its backbone and head use, e.g. 32 for ResNets)",
        json_schema_extra=_input_size_schema,
    ),
]
ClassName = Annotated[str, Field(min_length=1, pattern=r"\S")]
ClassNames = Annotated[list[ClassName], Field(min_length=1), AfterValidator(_check_unique)]
Channels = tuple[float, float, float]
PositiveChannels = tuple[
    Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]
]


class NormalizeSpec(StrictModel):
    """`model.normalize`: the per-channel statistics the model applies to its [0, 1] RGB input."""

    mean: Channels = Field(description="per-channel mean (RGB) of [0, 1] images")
    std: PositiveChannels = Field(description="per-channel standard deviation (RGB), > 0")


class ModelSpec(BaseModel):
    """The `model:` section: backbone + head, input size, class names and input normalization."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    backbone: ComponentSpec
    head: ComponentSpec
    input_size: InputSize
    class_names: ClassNames = Field(description="one name per class, in label order")
    normalize: NormalizeSpec | None = Field(
        default=None,
        description="input normalization inside the model; default: the backbone's own statistics "
        "(ImageNet's for the built-in ResNets)",
    )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class DataSpec(BaseModel):
    """The `data:` section: datasets, augmentation and loading."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    train: ComponentSpec = Field(description="training dataset")
    val: ComponentSpec | None = Field(default=None, description="validation dataset")
    augment: list[ComponentSpec] = Field(
        default_factory=list,
        description="training augmentations in order, ending with a resize to the input size; "
        "evaluation and prediction letterbox to the input size (the model's own preprocessing)",
    )
    batch_size: int = Field(default=16, ge=1, le=4096, description="images per batch (per process)")
    num_workers: int = Field(default=2, ge=0, le=64, description="DataLoader worker processes")
    pin_memory: bool | None = Field(default=None, description="pin host memory; default: when on CUDA")
    persistent_workers: bool = Field(default=True, description="keep workers alive between epochs")
    seed: int = Field(default=0, ge=0, description="seed of shuffling and augmentation")
    on_bad_sample: Literal["error", "skip"] = Field(
        default="error", description="stop at a bad image/annotation, or warn, count and skip it"
    )


class ExportSpec(StrictModel):
    """The `export:` section (`toolkit export`): ONNX file, shapes, precision, verification."""

    output: str | None = Field(default=None, description="ONNX file; default next to the checkpoint")
    opset: Annotated[int, Field(ge=18, le=25)] | None = Field(
        default=None, description="ONNX opset (>= 18, the dynamo exporter's lowest); default: torch's"
    )
    dynamic: Literal["batch", "batch,hw"] = Field(
        default="batch",
        description="dynamic axes: batch, or batch and height/width (multiples of the input multiple)",
    )
    decode: bool = Field(default=True, description="decoding in the graph (false: the raw head outputs)")
    fp16: bool = Field(default=False, description="fp16 weights and compute, float32 inputs and outputs")
    int8: bool = Field(default=False, description="static int8 quantization (QDQ), calibrated on data images")
    verify: bool = Field(default=True, description="check the file against the torch model")
    calibration_images: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=64, description="images of the spec's data used to calibrate int8"
    )
    metric_images: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=200, description="validation images on which int8 is scored against fp32"
    )

    @model_validator(mode="after")
    def _one_precision(self) -> ExportSpec:
        if self.fp16 and self.int8:
            raise ValueError("fp16 and int8 exclude each other; choose one")
        if self.int8 and not self.decode:
            raise ValueError("int8 is scored by the task's metric, which needs decoding: drop decode: false")
        return self


class TileSpec(StrictModel):
    """Sliced inference (`predict.tile`, `toolkit predict/eval --tile`): overlapping tiles of the image,
    detected in batches and merged back in original pixels (docs/tiling.md)."""

    size: Annotated[int, Field(ge=32, le=16384)] | None = Field(
        default=None, description="tile side in image pixels; default: the model's input size (no scaling)"
    )
    overlap: Annotated[float, Field(ge=0.0, le=0.9)] = Field(
        default=0.2, description="fraction of a tile its neighbour shares (objects this size stay whole)"
    )
    batch: Annotated[int, Field(ge=1, le=1024)] = Field(default=8, description="tiles run together")
    full_image: bool = Field(
        default=False, description="also detect in the whole image letterboxed (large objects), merged in"
    )
    merge: Literal["nms", "fusion"] = Field(
        default="nms",
        description="nms: the best of a class's overlapping boxes (IoU >= iou) is kept (measured best: "
        "docs/tiling.md); fusion: boxes of a class that overlap by intersection over the smaller box >= "
        "iou become their enclosing box (an object cut by a tile border is one box; wants a score "
        "threshold, or low-score boxes widen it)",
    )
    iou: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        default=0.5, description="overlap at which two boxes of a class are merged"
    )


class PredictSpec(StrictModel):
    """The `predict:` section (`toolkit predict`, `toolkit eval --tile`): how images are run."""

    tile: TileSpec | None = Field(default=None, description="sliced inference; null: the whole image")


class AttackSpec(StrictModel):
    """The `attack:` section (`toolkit attack`): the attack and the data it runs on."""

    method: ComponentSpec = Field(description="the attack: fgsm, pgd, patch or a plugin's")
    split: Literal["val", "train"] = Field(default="val", description="the data split attacked")
    max_images: int | None = Field(
        default=None, ge=1, description="attack at most this many images, evenly spaced over the split"
    )
    batch_size: int | None = Field(default=None, ge=1, le=4096, description="default: data.batch_size")
    examples: int = Field(default=6, ge=0, le=64, description="images shown in examples.png")
    score_threshold: float = Field(
        default=0.3, ge=0.0, le=1.0, description="detections at or above this count as found (success rate)"
    )
    fit_split: Literal["train", "val"] = Field(
        default="train", description="attacks that learn (the patch) fit on this split"
    )


class Spec(BaseModel):
    """A whole experiment: plugins to load and the sections that describe it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    plugins: list[str] = Field(default_factory=list, description="extra plugin modules to load")
    model: ModelSpec
    data: DataSpec | None = Field(default=None, description="datasets, augmentation, loaders")
    train: TrainSpec | None = Field(default=None, description="training: optimizer, schedule, epochs, ...")
    export: ExportSpec | None = Field(
        default=None, description="ONNX export: shapes, precision, verification"
    )
    attack: AttackSpec | None = Field(default=None, description="adversarial attack: method, data, report")
    predict: PredictSpec | None = Field(default=None, description="prediction: sliced inference")
    _source: str = PrivateAttr(default="<dict>")

    @property
    def source(self) -> str:
        """The file (or '<dict>') the spec was read from."""
        return self._source


__all__ = [
    "AttackSpec",
    "ComponentSpec",
    "DataSpec",
    "ExportSpec",
    "InputSize",
    "ModelSpec",
    "NormalizeSpec",
    "PredictSpec",
    "Spec",
    "TileSpec",
]
