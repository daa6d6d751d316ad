"""The one builder: spec sections -> checked objects (model, task, loss, attack, datasets, transforms,
data splits, loggers).

`Builder(plugins)` holds the plugin manager's registries; it is made at the edges (the CLI, the
public API) and handed to what builds. Every built component is checked against its protocol
(`toolkit.contracts`); errors name the member, the component and the plugin. `build_model` is the
public entry point (the default plugin manager when none is given).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.checkpoints import load_pretrained, resolve_target
from toolkit.contracts import (
    IMAGENET_NORMALIZATION,
    FeatureInfo,
    HasDefaultLoss,
    HasInputMultiple,
    HasLevels,
    HasNormalization,
    HasTargetEncoder,
    IgnoresWeightKeys,
    Normalization,
    Task,
    UsesLevels,
)
from toolkit.data.split import DataSplit
from toolkit.errors import ComponentError, ToolkitError, describe_exception, validation_problems
from toolkit.guard import call_component, guard
from toolkit.kinds import (
    ATTACK,
    AUGMENTATION,
    BACKBONE,
    DATASET,
    HEAD,
    LOGGER,
    LOSS,
    TASK,
    Kind,
    check_component,
)
from toolkit.plugins import PluginManager, get_plugin_manager
from toolkit.spec import ComponentSpec, DataSpec, ModelSpec, Spec, load_spec
from toolkit.spec.derived import NO_WEIGHTS, PRETRAINED, plugin_accepts
from toolkit.spec.load import input_size_problem

if TYPE_CHECKING:
    import torch
    from torch import nn

    from toolkit.data.split import DataSplit
    from toolkit.model import ToolkitModel
    from toolkit.registry import ComponentEntry, Registry

#: the dataset parameter that receives model.class_names when the spec leaves it out
CLASS_NAMES = "class_names"


def build_model(
    spec: Spec | ModelSpec | Mapping[str, Any] | str | Path, *, plugins: PluginManager | None = None
) -> ToolkitModel:
    """Build backbone + head + task from a spec (object, mapping or file path), contracts checked."""
    return Builder(plugins).model(spec)


def load_model(
    path: str | Path, *, device: str | torch.device = "cpu", plugins: PluginManager | None = None
) -> ToolkitModel:
    """The model of a run's checkpoint (`best.pt` / `last.pt`), in eval mode, on `device` (components
    from `plugins`, default the process-wide plugin manager)."""
    return resolve_target(path, builder=Builder(plugins), as_checkpoint=True).model.to(device)


class Builder:
    """Builds spec sections into checked components from one plugin manager's registries (the
    process-wide one when none is given)."""

    def __init__(self, plugins: PluginManager | None = None) -> None:
        self.plugins = plugins or get_plugin_manager()

    def registry(self, kind: Kind) -> Registry:
        return self.plugins.registry(kind.name)

    # -- components -----------------------------------------------------------------------------
    def component(self, kind: Kind, ref: ComponentSpec, *, path: str, **injected: Any) -> Any:
        """The registered component `ref.type` of `kind` with its validated parameters, checked."""
        entry = self.registry(kind).get(ref.type, path=f"{path}.type")
        params = ref if isinstance(ref, entry.params) else entry.params.model_validate(_params_of(ref))
        return built(kind, entry, params, path=path, **injected)

    def task(self, name: str, *, named_by: str) -> Task:
        """The registered task `name` (as a head, a dataset or an ONNX file names it)."""
        registry = self.registry(TASK)
        if name not in registry:
            raise ToolkitError(
                f"{named_by} names task {name!r}, which no plugin registers; registered tasks: "
                f"{', '.join(registry.names()) or 'none'} (list them with 'toolkit plugins')"
            )
        entry = registry.get(name)
        return built(TASK, entry, {})

    def backbone(self, ref: ComponentSpec) -> nn.Module:
        """The backbone, with `pretrained: PATH` loaded by the core for any backbone (toolkit.checkpoints)."""
        entry = self.registry(BACKBONE).get(ref.type, path="model.backbone.type")
        data = _params_of(ref)
        value = data.get(PRETRAINED, NO_WEIGHTS)
        weights_file: str | None = None
        if PRETRAINED in entry.params.model_fields:
            if not plugin_accepts(entry, PRETRAINED, value):
                weights_file = str(value)
                data[PRETRAINED] = entry.params.model_fields[PRETRAINED].default
        else:
            data.pop(PRETRAINED, None)
            weights_file = None if value == NO_WEIGHTS else str(value)
        backbone = built(BACKBONE, entry, entry.params.model_validate(data), path="model.backbone")
        if weights_file is not None:
            ignored = backbone.ignored_weight_prefixes if isinstance(backbone, IgnoresWeightKeys) else ()
            load_pretrained(backbone, weights_file, component=ref.type, ignore_prefixes=tuple(ignored))
        return backbone

    def model(self, spec: Spec | ModelSpec | Mapping[str, Any] | str | Path) -> ToolkitModel:
        """Backbone + head + task from a spec (object, mapping or file path), contracts checked."""
        from toolkit.model import ToolkitModel

        if not isinstance(spec, (Spec, ModelSpec)):
            spec = load_spec(spec, plugins=self.plugins)
        model_spec = spec.model if isinstance(spec, Spec) else spec
        backbone = self.backbone(model_spec.backbone)
        levels = FeatureInfo(backbone.levels) if isinstance(backbone, HasLevels) else None
        head = self.component(
            HEAD,
            model_spec.head,
            path="model.head",
            in_channels=int(backbone.out_channels),
            stride=int(backbone.stride),
            num_classes=model_spec.num_classes,
            levels=levels,
        )
        if isinstance(head, UsesLevels) and head.uses_levels and levels is None:
            raise ToolkitError(
                f"head {model_spec.head.type!r} needs the backbone's feature levels, but backbone "
                f"{model_spec.backbone.type!r} offers none (no `levels` / `forward_levels`); choose a "
                "backbone with levels or configure the head without skip connections"
            )
        task = self.task(str(head.task), named_by=f"head {model_spec.head.type!r}")
        multiple = input_multiple(backbone, head, levels)
        who = f"backbone {model_spec.backbone.type!r} and head {model_spec.head.type!r}"
        problem = input_size_problem(model_spec.input_size, multiple, who)
        if problem:
            raise ToolkitError(f"model.input_size {list(model_spec.input_size)}: {problem}")
        return ToolkitModel(
            backbone,
            head,
            task,
            class_names=model_spec.class_names,
            input_size=model_spec.input_size,
            normalization=normalization_of(model_spec, backbone),
            input_multiple=multiple,
        )

    def loss(self, spec: Spec, model: ToolkitModel) -> nn.Module:
        """train.loss, or the head's `default_loss` ({type, ...params})."""
        num_classes = spec.model.num_classes
        if spec.train is not None and spec.train.loss is not None:
            return self.component(LOSS, spec.train.loss, path="train.loss", num_classes=num_classes)
        if not isinstance(model.head, HasDefaultLoss):
            raise ToolkitError(f"head {spec.model.head.type!r} has no default loss: set train.loss")
        default = dict(model.head.default_loss)
        name = default.pop("type", None)
        if name is None:
            raise ToolkitError(
                f"head {spec.model.head.type!r} has a default_loss without 'type': set train.loss"
            )
        entry = self.registry(LOSS).get(name, path="train.loss.type")
        named_by = f"head {spec.model.head.type!r} default_loss"
        return built(LOSS, entry, default, path=named_by, num_classes=num_classes)

    # -- data -----------------------------------------------------------------------------------
    def dataset(self, spec: Spec, split: str) -> Any:
        """The dataset of `data.<split>` ('train' or 'val'), checked against model.class_names (which
        it receives as its own `class_names` when that parameter defaults to None and the spec leaves
        it out)."""
        data = data_section(spec)
        ref = getattr(data, split, None)
        if ref is None:
            raise ToolkitError(
                f"{spec.source}: data.{split} is not set; add a dataset there (e.g. {{type: shapes}})"
            )
        entry = self.registry(DATASET).get(ref.type, path=f"data.{split}.type")
        params = _params_of(ref)
        if _takes_model_class_names(entry, ref):
            params[CLASS_NAMES] = list(spec.model.class_names)
        params = entry.params.model_validate(params)
        dataset = built(DATASET, entry, params, path=f"data.{split}", on_bad_sample=data.on_bad_sample)
        names = list(dataset.class_names)
        if names != list(spec.model.class_names):
            raise ToolkitError(
                f"data.{split}: the dataset's classes {names} differ from model.class_names "
                f"{list(spec.model.class_names)}; make model.class_names list the same names in the "
                "same order"
            )
        return dataset

    def transforms(self, spec: Spec, task: Task, *, train: bool) -> Any:
        """Training: data.augment (ending with a resize); evaluation: the model's own preprocessing.
        Then the task's own steps (e.g. box sanitizing)."""
        from torchvision.transforms import v2

        from toolkit.data.pipeline import compose
        from toolkit.inference import model_preprocessing

        after = task.transforms_after()
        if not train:  # already ends in float [0, 1]
            return v2.Compose([*model_preprocessing(spec.model.input_size), *after])
        transforms = [
            self.component(AUGMENTATION, ref, path=f"data.augment.{i}", input_size=spec.model.input_size)
            for i, ref in enumerate(data_section(spec).augment)
        ]
        return compose(transforms, after=after)

    def split(
        self,
        spec: Spec,
        model: ToolkitModel,
        split: str,
        *,
        train: bool | None = None,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
        batch_size: int | None = None,
        num_workers: int | None = None,
        indices: Sequence[int] | None = None,
        dataset: Any = None,
    ) -> DataSplit:
        """`data.<split>` built once: the dataset (or `dataset`, already built from it), its
        transforms (`train`: the augmentations; default: for the train split), the model's target
        encoding, the loader (shuffled when training) and the task's evaluator for it."""
        from toolkit.data.loader import make_loader
        from toolkit.data.pipeline import ProcessedDataset

        training = split == "train" if train is None else train
        raw = dataset if dataset is not None else self.dataset(spec, split)
        task = model.task
        if raw.task not in task.dataset_tasks:
            raise ToolkitError(
                f"data.{split} is a {raw.task} dataset but model.head ({spec.model.head.type}) is a "
                f"{task.name} head, which trains on {' or '.join(task.dataset_tasks)} datasets; pick a "
                "matching dataset or head"
            )
        if not isinstance(model.head, HasTargetEncoder):
            raise ToolkitError(
                f"head {spec.model.head.type!r} has no target_encoder(input_size): it cannot be trained or "
                "evaluated on data; see docs/plugins.md (heads)"
            )
        data = data_section(spec)
        processed = ProcessedDataset(
            raw,
            self.transforms(spec, task, train=training),
            call_component(
                model.head, "building its target encoder", model.head.target_encoder, spec.model.input_size
            ),
            task,
            input_size=spec.model.input_size,
            seed=data.seed,
            skip_bad=data.on_bad_sample == "skip",
        )
        loader = make_loader(
            processed,
            data,
            shuffle=training,
            rank=rank,
            world_size=world_size,
            device=device,
            batch_size=batch_size,
            num_workers=num_workers,
            indices=indices,
        )
        return DataSplit(split, raw, processed, loader, task, list(model.class_names))

    # -- the rest -------------------------------------------------------------------------------
    def attack(self, ref: ComponentSpec, *, path: str) -> Any:
        """The attack component `ref` (`attack.method`, `train.adversarial.attack`)."""
        return self.component(ATTACK, ref, path=path)

    def logger(self, name: str, params: Any, *, path: str) -> tuple[str, Any]:
        """(plugin description, logger) of one `train.loggers` entry: logger `name` with its
        validated `params` (`toolkit.engine.loggers` reads the entry)."""
        entry = self.registry(LOGGER).get(name, path=f"{path}.type")
        return entry.plugin.describe(), built(LOGGER, entry, params, path=path)


# -- helpers -----------------------------------------------------------------------------------
def built(kind: Kind, entry: ComponentEntry, params: Any, *, path: str | None = None, **injected: Any) -> Any:
    """`_construct`, then the object checked against its kind's contract and labelled
    (`kinds.check_component`), and guarded when its kind says so (`toolkit.guard`): the one way every
    component is made."""
    component = _construct(entry, params, path=path, **injected)
    check_component(kind, entry.name, component, entry.plugin)
    return guard(component) if kind.guarded else component


def _construct(entry: ComponentEntry, params: Any, *, path: str | None = None, **injected: Any) -> Any:
    """`entry.build(params, **injected)`; an exception from the plugin's factory becomes a
    ComponentError naming the kind, the component, its plugin and the spec path (a ToolkitError the
    factory raises passes through)."""
    try:
        return entry.build(params, **injected)
    except ToolkitError:
        raise
    except Exception as exc:
        where = f"{path}: " if path else ""
        raise ComponentError(
            f"{where}{entry.kind} {entry.name!r} from {entry.plugin.describe()} failed to build: "
            f"{_exception_text(exc)}; check its parameters (TOOLKIT_DEBUG=1 shows the traceback)"
        ) from exc


def _exception_text(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):  # e.g. a head's default_loss with a wrong parameter
        return f"invalid parameters ({validation_problems(exc)})"
    return describe_exception(exc)


def input_multiple(backbone: Any, head: Any, levels: FeatureInfo | None) -> int:
    """What input sides must be multiples of: the largest stride the backbone and head use."""
    values = [int(backbone.stride), *(levels.strides() if levels else [])]
    values += [int(part.input_multiple) for part in (backbone, head) if isinstance(part, HasInputMultiple)]
    return math.lcm(*values)


def normalization_of(model_spec: ModelSpec, backbone: Any) -> Normalization:
    """model.normalize, else the backbone's declared statistics, else ImageNet's."""
    if model_spec.normalize is not None:
        return Normalization(tuple(model_spec.normalize.mean), tuple(model_spec.normalize.std))
    if isinstance(backbone, HasNormalization):
        return backbone.normalization
    return IMAGENET_NORMALIZATION


def data_section(spec: Spec) -> DataSpec:
    if spec.data is None:
        raise ToolkitError(
            f"{spec.source}: the spec has no 'data' section; add data.train (e.g. {{type: shapes}})"
        )
    return spec.data


def _takes_model_class_names(entry: ComponentEntry, ref: ComponentSpec) -> bool:
    """Whether the dataset reads its classes from the model: it has a `class_names` parameter whose
    default is None (its own choice: all of its classes) and the spec leaves it out or null (a saved
    spec writes the default out)."""
    field = entry.params.model_fields.get(CLASS_NAMES)
    return field is not None and field.default is None and _params_of(ref).get(CLASS_NAMES) is None


def _params_of(ref: ComponentSpec) -> dict[str, Any]:
    data = ref.model_dump()
    data.pop("type", None)
    return data
