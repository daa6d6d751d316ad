"""Every component contract, stated once as `typing.Protocol`s, and the builder's check against them.

A plugin's factory returns an object that satisfies its kind's protocol; the builder checks every
built object against it (`toolkit.kinds.check_component`: the kind table says which protocol, which
optional parts and which value checks a kind has) and names the missing member, the component and
the plugin. Optional parts of a contract are separate protocols (`HasLevels`, `Freezable`,
`HasNormalization`, ...): code asks `isinstance(obj, Freezable)` instead of probing attributes.

Images crossing a model boundary are float RGB in [0, 1], [N, 3, H, W]: a model normalizes inside
(`Normalization`), so training, prediction, export and attacks share one input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from torch import Tensor


# -- small typed values -------------------------------------------------------------------------
class FeatureLevel(NamedTuple):
    """One feature map a backbone offers: its channels and its stride (input pixels per cell)."""

    channels: int
    stride: int


class FeatureInfo(tuple[FeatureLevel, ...]):
    """A backbone's feature levels, finest first (as timm's `feature_info`, detectron2's `ShapeSpec`).

    A tuple of `FeatureLevel`s, so `((64, 4), (128, 8))` compares equal to it.
    """

    def __new__(cls, levels: Iterable[tuple[int, int]]) -> FeatureInfo:
        items = tuple(FeatureLevel(int(channels), int(stride)) for channels, stride in levels)
        for level in items:
            if level.channels < 1 or level.stride < 1:
                raise ValueError(f"feature levels need positive channels and strides, got {level}")
        return super().__new__(cls, items)

    def channels(self) -> list[int]:
        return [level.channels for level in self]

    def strides(self) -> list[int]:
        return [level.stride for level in self]


@dataclass(frozen=True)
class Normalization:
    """Per-channel `(image - mean) / std` that a model applies to its [0, 1] RGB input."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ValueError(f"normalization needs 3 means and 3 positive stds, got {self.mean}, {self.std}")


#: The statistics of torchvision's ImageNet weights (the built-in ResNets' default).
IMAGENET_NORMALIZATION = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


# -- components ---------------------------------------------------------------------------------
@runtime_checkable
class Backbone(Protocol):
    """`nn.Module`: `forward(images [N,3,H,W]) -> features [N, out_channels, H/stride, W/stride]`.

    Images arrive normalized (the model applies its `Normalization` first).
    """

    out_channels: int
    stride: int

    def __call__(self, images: Tensor) -> Tensor: ...


@runtime_checkable
class HasLevels(Protocol):
    """Optional backbone part: intermediate maps for skip connections.

    `levels` (channels, stride) per map, finest first, the last equal to (out_channels, stride);
    `forward_levels(images)` returns those maps.
    """

    levels: Sequence[tuple[int, int]]

    def forward_levels(self, images: Tensor) -> list[Tensor]: ...


@runtime_checkable
class Freezable(Protocol):
    """Optional backbone part: `set_frozen_stages(k)` freezes the first k stages (0: none)."""

    def set_frozen_stages(self, k: int) -> None: ...


@runtime_checkable
class HasNormalization(Protocol):
    """Optional backbone part: the input statistics its weights expect (default: ImageNet's)."""

    normalization: Normalization


@runtime_checkable
class IgnoresWeightKeys(Protocol):
    """Optional backbone part: key prefixes of pretrained files to drop silently (e.g. "fc.")."""

    ignored_weight_prefixes: tuple[str, ...]


@runtime_checkable
class Head(Protocol):
    """`nn.Module` built from injected `(in_channels, stride, num_classes, levels)`.

    `forward(features) -> dict` of raw outputs; `decode(outputs) -> dict` of predictions in
    model-input pixels, traceable for ONNX (constant K); `task` names a registered task.
    """

    task: str

    def __call__(self, features: Any) -> dict[str, Tensor]: ...

    def decode(self, outputs: Mapping[str, Tensor]) -> dict[str, Tensor]: ...


@runtime_checkable
class HasTargetEncoder(Protocol):
    """Optional head part (needed to train): `target_encoder(input_size)` returns the callable that
    packs one sample's targets into the tensors its loss reads (see `Task.encode_target`)."""

    def target_encoder(self, input_size: tuple[int, int]) -> Callable[..., dict[str, Tensor]]: ...


@runtime_checkable
class HasDefaultLoss(Protocol):
    """Optional head part: `default_loss`, `{type: NAME, **params}` of the loss used when the spec
    sets no `train.loss`."""

    default_loss: Mapping[str, Any]


@runtime_checkable
class UsesLevels(Protocol):
    """Optional head part: `uses_levels` True makes the model pass all backbone levels."""

    uses_levels: bool


@runtime_checkable
class HasInputMultiple(Protocol):
    """Optional backbone or head part: input sides must be multiples of `input_multiple`."""

    input_multiple: int


@runtime_checkable
class Loss(Protocol):
    """`forward(outputs, targets) -> dict` of named (weighted) terms plus their total `loss`."""

    def __call__(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> dict[str, Tensor]: ...


@runtime_checkable
class Augmentation(Protocol):
    """A box-aware `torchvision.transforms.v2` transform: `transform(image, target) -> (image, target)`.

    Optional part: `NeedsFloat`.
    """

    def __call__(self, *inputs: Any) -> Any: ...


@runtime_checkable
class NeedsFloat(Protocol):
    """Optional augmentation part: `needs_float` True makes the pipeline convert uint8 images to
    float [0, 1] right before this augmentation (e.g. noise)."""

    needs_float: bool


@runtime_checkable
class Attack(Protocol):
    """`attack(model, images in [0,1], targets) -> adversarial images in [0,1]`; the model untouched."""

    def __call__(self, model: Any, images: Tensor, targets: Any) -> Tensor: ...


@runtime_checkable
class Dataset(Protocol):
    """`dataset[i] -> (uint8 image [3,H,W], target)`; every file it names stays under its root.

    `task` names the target format (a registered task that reads it natively): "detection"
    targets are `{"boxes": BoundingBoxes XYXY, "labels": int64 [M], "image_id": int}`,
    "classification" targets an int label. `class_names` lists the classes in label order.
    Detection datasets also offer `ground_truth()` (COCO-format dict) for evaluation.
    """

    task: str
    class_names: Sequence[str]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[Tensor, Any]: ...


@runtime_checkable
class CountsBoxQuirks(Protocol):
    """Optional dataset part: how many boxes it dropped (zero-area, inverted, outside the image) and
    clipped (crossing the border) while indexing; the run's summary reports them."""

    dropped_boxes: int
    clipped_boxes: int


@runtime_checkable
class RunLogger(Protocol):
    """Receives what a training run logs (`train.loggers`); see `toolkit.engine.loggers`.

    - `start(run_dir, *, resume_step)`: once, before anything is logged; `resume_step` is not None
      when a run continues (`--resume`) from that optimizer step: drop what was logged after it,
      so that a resumed run's outputs equal an uninterrupted run's;
    - `log(record)`: one JSON-serializable record, `record["kind"]` one of
      "train" (`epoch`, `step`, `lr`, `loss` {term: float}, `images_per_s`), every log interval;
      "val" (`epoch`, `step`, `metrics`), after each evaluation; "epoch" (`epoch`, `step`, `lr`,
      `train_loss` {term: epoch mean}, `seconds`, and `metrics` when evaluated), once per epoch;
    - `log_image(tag, path, *, step)`: a PNG the run wrote (plots);
    - `flush()`: make what was logged durable; called before every checkpoint save;
    - `finish(summary)`: the end of the run, with its summary as a dict.
    """

    def start(self, run_dir: Path, *, resume_step: int | None) -> None: ...

    def log(self, record: Mapping[str, Any]) -> None: ...

    def log_image(self, tag: str, path: Path, *, step: int) -> None: ...

    def flush(self) -> None: ...

    def finish(self, summary: Mapping[str, Any]) -> None: ...


@runtime_checkable
class WritesRunFiles(Protocol):
    """A logger that writes in the run folder: `run_files`, the paths (relative to the run folder)
    it creates or replaces. A run that would replace a file or folder the user had there (an
    `--exist-ok` folder that held no run) is refused before anything is written."""

    run_files: Sequence[str]


@runtime_checkable
class Evaluator(Protocol):
    """Accumulates one task's results over an evaluation run.

    `update(results, targets, meta)` takes a batch's per-image results (the task's `results`
    format), its encoded targets and per-image metadata; `compute(out_dir)` returns the metrics
    (a dict of numbers, the task's `metric_names` among them) and may write plots to `out_dir`.
    """

    def update(
        self, results: Sequence[Mapping[str, Any]], targets: Mapping[str, Tensor], meta: Sequence[Mapping]
    ) -> None: ...

    def compute(self, out_dir: Path | None = None) -> dict[str, Any]: ...


@runtime_checkable
class Task(Protocol):
    """What differs between detection, classification and any other task.

    - `name`; `dataset_tasks`: dataset target formats (`Dataset.task`) it trains on;
    - `metric_names` (headline first), `best_metric` (the default `train.best_metric`) and
      `lower_is_better`, the metrics for which smaller is better (e.g. an error);
    - `output_names`: `{name: shape}` of `head.decode`'s outputs (what an export carries);
    - `prepare_target(target)`: a dataset target -> the dict the v2 augmentations transform;
    - `transforms_after()`: transforms appended after the augmentations (e.g. box sanitizing);
    - `encode_target(target, encoder)`: an augmented target -> the head encoder's tensors;
    - `results(decoded, meta, input_size, class_names, score_threshold)`: decoded outputs of a
      batch -> one result per image, in original image pixels (meta has `orig_size` and, when
      letterboxed, `letterbox`); what `model.predict` returns and what evaluators read;
    - `evaluator(dataset, class_names)`: an `Evaluator` for a dataset of this task;
    - `draw(image, result, class_names)` / `draw_target(image, target, class_names)`: uint8
      [3,H,W] images with a result or a ground-truth target drawn on them.
    """

    name: str
    dataset_tasks: tuple[str, ...]
    metric_names: tuple[str, ...]
    best_metric: str
    lower_is_better: tuple[str, ...]
    output_names: Mapping[str, str]

    def prepare_target(self, target: Any) -> dict[str, Any]: ...

    def transforms_after(self) -> list[Any]: ...

    def encode_target(self, target: Mapping[str, Any], encoder: Callable[..., Any]) -> dict[str, Tensor]: ...

    def results(
        self,
        decoded: Mapping[str, Tensor],
        meta: Sequence[Mapping[str, Any]],
        input_size: tuple[int, int],
        class_names: Sequence[str],
        score_threshold: float = 0.0,
    ) -> list[dict[str, Any]]: ...

    def evaluator(self, dataset: Any, class_names: Sequence[str]) -> Evaluator: ...

    def draw(self, image: torch.Tensor, result: Mapping[str, Any], class_names: Sequence[str]) -> Tensor: ...

    def draw_target(
        self, image: torch.Tensor, target: Mapping[str, Any], class_names: Sequence[str]
    ) -> Tensor: ...


@runtime_checkable
class ComparesOutputs(Protocol):
    """Optional task part: how two runs of its exported outputs are compared (export verification).

    `compare_outputs(expected, actual, image_size, tolerance)` takes numpy outputs by name (torch,
    then onnxruntime) for one batch and returns the largest difference per output, on the scale of
    `tolerance` (e.g. detections matched as sets, box differences relative to the image side).
    """

    def compare_outputs(
        self,
        expected: Mapping[str, Any],
        actual: Mapping[str, Any],
        image_size: tuple[int, int],
        tolerance: float,
    ) -> dict[str, float]: ...


@runtime_checkable
class ExportsDatasets(Protocol):
    """Optional task part: `dataset_formats`, the `toolkit data export --format` values that write
    datasets of this task (detection: coco, voc, yolo; classification: folder)."""

    dataset_formats: tuple[str, ...]


@runtime_checkable
class CountsDatasets(Protocol):
    """Optional task part: `dataset_stats(dataset)`, the `toolkit.data.stats.DatasetStats` of a dataset
    of this task (`toolkit data stats`): detection counts boxes (`box_stats`), classification labels
    (`label_stats`)."""

    def dataset_stats(self, dataset: Any) -> Any: ...


@runtime_checkable
class MergesTiles(Protocol):
    """Optional task part: sliced inference (`toolkit.tiling`, `predict --tile`).

    `merge_tiles(parts, origins, method=, iou=)` gives one image's result from its tiles' results
    (`parts[i]` in the pixels of the window whose top-left corner is `origins[i]` = (x0, y0)):
    shifted to image pixels, then merged by `method` ("fusion" or "nms") at overlap `iou`
    (detection: boxes the tile borders cut or doubled become one).
    """

    def merge_tiles(
        self,
        parts: Sequence[Mapping[str, Any]],
        origins: Sequence[tuple[int, int]],
        *,
        method: str,
        iou: float,
    ) -> dict[str, Any]: ...


@runtime_checkable
class WritesResultFiles(Protocol):
    """Optional task part: the files `toolkit predict --out` writes beside predictions.json.

    `result_file_names` lists them (checked against files the toolkit did not write before any is
    written); `result_files(records, category_ids, image_ids)` gives each file's JSON document from
    predict's records (`{"image": path, **result}`, JSON values), the dataset's category id of each
    label (or None) and each record's image id (detection: COCO's results_coco.json).
    """

    result_file_names: tuple[str, ...]

    def result_files(
        self,
        records: Sequence[Mapping[str, Any]],
        category_ids: Sequence[int] | None,
        image_ids: Sequence[int],
    ) -> dict[str, Any]: ...


@runtime_checkable
class HasAttackObjectives(Protocol):
    """Optional task part: the objectives attacks maximize (`attack_objectives[0]` is the default) and
    `attack_loss(outputs, targets, objective=, target_class=)`, a per-image loss [N] that grows as
    the attack succeeds."""

    attack_objectives: tuple[str, ...]

    def attack_loss(
        self,
        outputs: Mapping[str, Tensor],
        targets: Mapping[str, Tensor],
        *,
        objective: str,
        target_class: int | None,
    ) -> Tensor: ...


@runtime_checkable
class JudgesAttacks(Protocol):
    """Optional task part (needed by `toolkit attack`): per image, whether an attack succeeded
    (None: not counted, e.g. nothing to attack), from the clean and adversarial results."""

    def attack_success(
        self,
        clean: Sequence[Mapping[str, Any]],
        adversarial: Sequence[Mapping[str, Any]],
        targets: Mapping[str, Tensor],
        *,
        objective: str,
        target_class: int | None,
        score_threshold: float,
    ) -> list[bool | None]: ...


@runtime_checkable
class AimsAtObjective(Protocol):
    """Optional attack part: the task objective it climbs and its target class (None: the task's
    default objective, no target); the report's success rate is judged against them."""

    objective: str | None
    target_class: str | int | None


@runtime_checkable
class FitsOnData(Protocol):
    """Optional attack part: learn from batches before attacking (the patch does), in `steps` steps."""

    steps: int

    def fit(self, model: Any, batches: Any, *, progress: Any = None) -> Any: ...


@runtime_checkable
class HasPatch(Protocol):
    """Optional attack part: a learned patch (`patch` [3,s,s] once fitted, else None; `side` its
    pixels) that `save(path)` writes as a printable PNG."""

    patch: Tensor | None
    side: int

    def save(self, path: Path) -> Path: ...


@runtime_checkable
class HasGroundTruth(Protocol):
    """Optional dataset part (every detection dataset has it): `ground_truth()`, the dataset's
    annotations as a COCO-format dict, image ids equal to the targets' `image_id`."""

    def ground_truth(self) -> dict[str, Any]: ...


@runtime_checkable
class HasCategoryIds(Protocol):
    """Optional dataset part: `category_ids`, the original category id of each label (COCO's ids),
    or None; predict and export write results with them."""

    category_ids: Sequence[int] | None


@runtime_checkable
class HasLabels(Protocol):
    """Optional classification dataset part: `labels`, every sample's label without decoding images."""

    labels: Sequence[int]


@runtime_checkable
class HasTask(Protocol):
    """What attacks read off a model: its task and class names (a `ToolkitModel`, or any module
    that has both)."""

    task: Task
    class_names: Sequence[str]


@runtime_checkable
class Predictor(Protocol):
    """What `predict` runs: a torch `ToolkitModel` or an `OnnxModel`."""

    task: Task
    class_names: list[str]
    category_ids: list[int] | None

    def predict(
        self, images: Any, *, score_threshold: float = 0.0, batch_size: int = 16, tile: Any = None
    ) -> list[dict[str, Any]]: ...


def protocol_members(protocol: type) -> list[str]:
    """The attribute and method names a protocol requires (annotations and methods, no dunders but call)."""
    names: list[str] = []
    for klass in reversed(protocol.__mro__):
        if klass in (object, Protocol) or not getattr(klass, "_is_protocol", False):
            continue
        names += [n for n in getattr(klass, "__annotations__", {}) if n not in names]
        names += [
            n
            for n, v in vars(klass).items()
            if callable(v)
            and (not n.startswith("_") or n == "__call__")
            and n not in names
            and n not in ("__init__", "__subclasshook__", "__class_getitem__", "__init_subclass__")
        ]
    return names


def missing_members(obj: Any, protocol: type) -> list[str]:
    """Members of `protocol` that `obj` lacks (a method must also be callable)."""
    missing = []
    for name in protocol_members(protocol):
        if name == "__call__":
            if not callable(obj):
                missing.append("__call__ (the object is not callable)")
        elif not hasattr(obj, name):
            missing.append(name)
    return missing


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and int(value) >= 1


def _positive_int(obj: Any, member: str) -> list[str]:
    value = getattr(obj, member)
    return [] if _is_positive_int(value) else [f"{member} is {value!r}, not a positive int"]


def _levels_problems(levels: Any) -> list[str]:
    try:
        pairs = [tuple(level) for level in levels]
    except TypeError:
        return [f"levels is {levels!r}, not a sequence of (channels, stride) pairs"]
    if not pairs or any(len(p) != 2 or not all(_is_positive_int(v) for v in p) for p in pairs):
        return [f"levels is {levels!r}, not a non-empty sequence of (channels, stride) positive int pairs"]
    return []


def backbone_value_problems(obj: Any) -> list[str]:
    """What is wrong with a backbone's declared values (types and ranges of its members)."""
    problems = _positive_int(obj, "out_channels") + _positive_int(obj, "stride")
    if isinstance(obj, HasLevels):
        problems += _levels_problems(obj.levels)
    if isinstance(obj, HasNormalization) and not isinstance(obj.normalization, Normalization):
        problems.append(f"normalization is {obj.normalization!r}, not a toolkit.contracts.Normalization")
    if isinstance(obj, IgnoresWeightKeys) and not (
        isinstance(obj.ignored_weight_prefixes, tuple)
        and all(isinstance(p, str) for p in obj.ignored_weight_prefixes)
    ):
        problems.append(f"ignored_weight_prefixes is {obj.ignored_weight_prefixes!r}, not a tuple of str")
    if isinstance(obj, HasInputMultiple):
        problems += _positive_int(obj, "input_multiple")
    return problems


def _task_name_problems(obj: Any) -> list[str]:
    """A head's or a dataset's `task`: the name of a task."""
    return [] if isinstance(obj.task, str) and obj.task else [f"task is {obj.task!r}, not the name of a task"]


def head_value_problems(obj: Any) -> list[str]:
    """What is wrong with a head's declared values."""
    problems = _positive_int(obj, "input_multiple") if isinstance(obj, HasInputMultiple) else []
    return problems + _task_name_problems(obj)


def dataset_value_problems(obj: Any) -> list[str]:
    """What is wrong with a dataset's declared values."""
    problems = _task_name_problems(obj)
    names = obj.class_names
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        problems.append(f"class_names is {names!r}, not a sequence of str")
    return problems


def logger_value_problems(obj: Any) -> list[str]:
    """What is wrong with a logger's declared values."""
    if not isinstance(obj, WritesRunFiles):
        return []
    files = obj.run_files
    if isinstance(files, str) or not all(isinstance(f, str) and f for f in files):
        return [f"run_files is {files!r}, not a sequence of paths (str) relative to the run folder"]
    return []


def task_value_problems(obj: Any) -> list[str]:
    """What is wrong with a task's declared values."""
    problems = []
    if not (isinstance(obj.name, str) and obj.name):
        problems.append(f"name is {obj.name!r}, not a str")
    if obj.best_metric not in tuple(obj.metric_names):
        problems.append(f"best_metric {obj.best_metric!r} is not one of its metric_names")
    return problems
