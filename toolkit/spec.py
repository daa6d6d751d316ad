"""Spec files as pydantic models, validated against the plugin registries; JSON Schema for editors.

The static classes below (`Spec`, `ModelSpec`, `ComponentSpec`) are what user code type-hints.
`spec_model(plugins)` derives subclasses in which every component reference is a discriminated
union (on `type`) of the registered components' parameter models, so validation and the JSON
Schema both come from the registry. Errors are collected and reported all at once, with paths.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
    create_model,
)

from toolkit.plugins import PluginManager, get_plugin_manager
from toolkit.registry import ComponentEntry, Registry
from toolkit.spec_base import ComponentSpec
from toolkit.spec_errors import KIND_KEY, SpecError, SpecIssue, describe_errors
from toolkit.spec_train import TrainSpec
from toolkit.specfile import apply_overrides, read_spec_file

INPUT_MULTIPLE = 32


# -- static spec classes ----------------------------------------------------------------------
def _square(value: Any) -> Any:
    return [value, value] if isinstance(value, int) and not isinstance(value, bool) else value


def _check_input_size(size: tuple[int, int]) -> tuple[int, int]:
    for side in size:
        if side % INPUT_MULTIPLE:
            lower = max(INPUT_MULTIPLE, side // INPUT_MULTIPLE * INPUT_MULTIPLE)
            raise ValueError(
                f"each side must be a multiple of {INPUT_MULTIPLE} (the backbone stride), "
                f"got {side}; use {lower} or {lower + INPUT_MULTIPLE}"
            )
    return size


def _check_unique(names: list[str]) -> list[str]:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"class name {name!r} appears twice; class names must be unique")
        seen.add(name)
    return names


InputSize = Annotated[
    tuple[
        Annotated[int, Field(ge=INPUT_MULTIPLE, le=4096)],
        Annotated[int, Field(ge=INPUT_MULTIPLE, le=4096)],
    ],
    BeforeValidator(_square),
    AfterValidator(_check_input_size),
    WithJsonSchema(
        {
            "description": f"[height, width] or one int (square), multiples of {INPUT_MULTIPLE}",
            "oneOf": [
                {"type": "integer", "minimum": INPUT_MULTIPLE, "multipleOf": INPUT_MULTIPLE},
                {
                    "type": "array",
                    "items": {
                        "type": "integer",
                        "minimum": INPUT_MULTIPLE,
                        "multipleOf": INPUT_MULTIPLE,
                    },
                    "minItems": 2,
                    "maxItems": 2,
                },
            ],
        }
    ),
]
ClassName = Annotated[str, Field(min_length=1, pattern=r"\S")]
ClassNames = Annotated[list[ClassName], Field(min_length=1), AfterValidator(_check_unique)]


class ModelSpec(BaseModel):
    """The `model:` section: backbone + head, input size and class names."""

    model_config = ConfigDict(extra="forbid")
    backbone: ComponentSpec
    head: ComponentSpec
    input_size: InputSize = Field(description="model input [height, width]")
    class_names: ClassNames = Field(description="one name per class, in label order")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class DataSpec(BaseModel):
    """The `data:` section: datasets, augmentation and loading."""

    model_config = ConfigDict(extra="forbid")
    train: ComponentSpec = Field(description="training dataset")
    val: ComponentSpec | None = Field(default=None, description="validation dataset")
    augment: list[ComponentSpec] = Field(
        default_factory=list,
        description="augmentations in order; evaluation keeps the deterministic ones (resize, normalize)",
    )
    batch_size: int = Field(default=16, ge=1, le=4096, description="images per batch (per process)")
    num_workers: int = Field(default=2, ge=0, le=64, description="DataLoader worker processes")
    pin_memory: bool | None = Field(default=None, description="pin host memory; default: when on CUDA")
    persistent_workers: bool = Field(default=True, description="keep workers alive between epochs")
    seed: int = Field(default=0, ge=0, description="seed of shuffling and augmentation")
    on_bad_sample: Literal["error", "skip"] = Field(
        default="error", description="stop at a bad image/annotation, or warn, count and skip it"
    )


class Spec(BaseModel):
    """A whole experiment: plugins to load and the sections that describe it."""

    model_config = ConfigDict(extra="forbid")
    plugins: list[str] = Field(default_factory=list, description="extra plugin modules to load")
    model: ModelSpec
    data: DataSpec | None = Field(default=None, description="datasets, augmentation, loaders")
    train: TrainSpec | None = Field(default=None, description="training: optimizer, schedule, epochs, ...")
    _source: str = PrivateAttr(default="<dict>")

    @property
    def source(self) -> str:
        """The file (or '<dict>') the spec was read from."""
        return self._source


# -- registry-derived models -------------------------------------------------------------------
def component_model(entry: ComponentEntry) -> type[BaseModel]:
    """The params model of `entry` extended with `type: Literal[name]`; unknown keys forbidden."""
    title = f"{entry.kind} {entry.name}"
    namespace = {
        "__annotations__": {"type": Literal[entry.name]},  # type: ignore[valid-type]
        "__doc__": entry.description or title,
        "__module__": __name__,
        "model_config": ConfigDict(extra="forbid", title=title),
    }
    name = f"{entry.kind.capitalize()}_{entry.name}".replace("-", "_")
    return type(name, (entry.params,), namespace)


def component_field(registry: Registry) -> Any:
    """Annotation of a spec field holding one component of `registry`'s kind."""
    extra = {KIND_KEY: registry.kind}
    members = [component_model(entry) for entry in registry]
    if not members:

        def _nothing_registered(value: Any) -> Any:
            raise ValueError(
                f"no {registry.kind} is registered; install or load (-p MODULE) a plugin that provides one"
            )

        return Annotated[ComponentSpec, AfterValidator(_nothing_registered), Field(json_schema_extra=extra)]
    union = Union[tuple(members)]  # noqa: UP007 - built from a runtime tuple
    return Annotated[union, Field(discriminator="type", json_schema_extra=extra)]


def spec_model(plugins: PluginManager | None = None) -> type[Spec]:
    """The `Spec` subclass that validates against the plugins' registries (cached per registry state)."""
    manager = plugins or get_plugin_manager()
    key = tuple((kind, tuple(reg.names())) for kind, reg in manager.registries.items())
    cache = manager.spec_model_cache
    if key not in cache:
        model_section = create_model(
            "ModelSpec",
            __base__=ModelSpec,
            __module__=__name__,
            backbone=(
                component_field(manager.registry("backbone")),
                Field(description="feature extractor"),
            ),
            head=(component_field(manager.registry("head")), Field(description="task head")),
        )
        dataset = component_field(manager.registry("dataset"))
        data_section = create_model(
            "DataSpec",
            __base__=DataSpec,
            __module__=__name__,
            train=(dataset, Field(description="training dataset")),
            val=(dataset | None, Field(default=None, description="validation dataset")),
            augment=(
                list[component_field(manager.registry("augmentation"))],  # type: ignore[misc]
                Field(default_factory=list, description=DataSpec.model_fields["augment"].description),
            ),
        )
        train_section = create_model(
            "TrainSpec",
            __base__=TrainSpec,
            __module__=__name__,
            loss=(
                component_field(manager.registry("loss")) | None,
                Field(default=None, description=TrainSpec.model_fields["loss"].description),
            ),
        )
        cache[key] = create_model(
            "Spec",
            __base__=Spec,
            __module__=__name__,
            model=(model_section, ...),
            data=(data_section | None, Field(default=None, description="datasets, augmentation, loaders")),
            train=(
                train_section | None,
                Field(default=None, description=Spec.model_fields["train"].description),
            ),
        )
    return cache[key]


def spec_json_schema(plugins: PluginManager | None = None) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of spec files, including every loaded plugin's components."""
    schema = spec_model(plugins).model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "toolkit spec",
        **{k: v for k, v in schema.items() if k != "title"},
    }


# -- loading ----------------------------------------------------------------------------------
def load_spec(
    source: str | Path | Mapping[str, Any] | Spec,
    overrides: Sequence[str] = (),
    *,
    plugins: PluginManager | None = None,
) -> Spec:
    """Read (YAML/JSON file or mapping), apply `key.sub=value` overrides, load the spec's plugins, validate.

    Raises SpecError listing every problem with its path.
    """
    manager = plugins or get_plugin_manager()
    if isinstance(source, Spec):
        source, name = source.model_dump(mode="json"), source.source
    elif isinstance(source, Mapping):
        name = "<dict>"
    else:
        name = str(source)
        source = read_spec_file(source)
    raw = apply_overrides(dict(source), overrides)
    plugin_modules = raw.get("plugins", [])
    if not isinstance(plugin_modules, list) or not all(isinstance(m, str) for m in plugin_modules):
        raise SpecError(name, [SpecIssue("plugins", "must be a list of module names")])
    manager.add_modules(plugin_modules, source="spec")
    model = spec_model(manager)
    try:
        spec = model.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(name, describe_errors(model, exc, manager)) from None
    spec._source = name
    return spec
