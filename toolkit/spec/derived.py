"""Spec models derived from the plugin registries: every component reference is a discriminated
union (on `type`) of the registered components' parameter models, so validation and the JSON
Schema both come from the registry.

Backbones get one core-owned parameter, `pretrained`: besides what the plugin's own `pretrained`
accepts (e.g. 'imagenet'), the path of a local weights file, loaded by the core
(`toolkit.checkpoints`) for every backbone.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    WrapValidator,
    create_model,
)
from pydantic.fields import FieldInfo

from toolkit.kinds import ATTACK, AUGMENTATION, BACKBONE, DATASET, HEAD, LOGGER, LOSS
from toolkit.plugins import PluginManager
from toolkit.registry import ComponentEntry, Registry
from toolkit.spec.base import ComponentSpec
from toolkit.spec.errors import KIND_KEY
from toolkit.spec.models import AttackSpec, DataSpec, ModelSpec, Spec
from toolkit.spec.train import AdversarialSpec, TrainSpec

PRETRAINED = "pretrained"
NO_WEIGHTS = "none"


def plugin_accepts(entry: ComponentEntry, field: str, value: Any) -> bool:
    """Whether the component's own params model accepts `value` for `field`."""
    info = entry.params.model_fields.get(field)
    if info is None:
        return False
    try:
        _field_adapter(info).validate_python(value)
    except ValidationError:
        return False
    return True


def _field_adapter(info: FieldInfo) -> TypeAdapter:
    return TypeAdapter(Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation)


def _weights_file(value: Any, accepted: str) -> str:
    if isinstance(value, str) and value and Path(value).is_file():
        return value
    raise ValueError(f"{value!r} is not a file; use {accepted} or the path of a local weights file")


def _pretrained_field(info: FieldInfo | None) -> tuple[Any, Any]:
    """(annotation, FieldInfo) of `pretrained` on a backbone: the plugin's values, or a weights file."""
    description = "the path of a local weights file (state dict or toolkit checkpoint), loaded by the core"
    if info is None:

        def validate_own(value: Any, handler: Any) -> Any:
            return value if value == NO_WEIGHTS else _weights_file(value, repr(NO_WEIGHTS))

        schema = {"type": "string", "description": f"'none' or {description}"}
        annotation = Annotated[str, WrapValidator(validate_own), WithJsonSchema(schema)]
        return annotation, Field(default=NO_WEIGHTS, description=schema["description"])
    adapter = _field_adapter(info)
    plugin_schema = adapter.json_schema()

    def validate_either(value: Any, handler: Any) -> Any:
        try:
            return adapter.validate_python(value)
        except ValidationError:
            choices = plugin_schema.get("enum")
            accepted = " or ".join(map(repr, choices)) if choices else "a value the backbone accepts"
            return _weights_file(value, accepted)

    schema = {"anyOf": [plugin_schema, {"type": "string", "description": description}]}
    annotation = Annotated[Any, WrapValidator(validate_either), WithJsonSchema(schema)]
    return annotation, Field(default=info.default, description=info.description or description)


@functools.cache
def component_model(entry: ComponentEntry) -> type[BaseModel]:
    """The params model of `entry` extended with `type: Literal[name]` (and, for backbones, the
    core's `pretrained`); unknown keys and non-finite numbers forbidden."""
    title = f"{entry.kind} {entry.name}"
    annotations: dict[str, Any] = {"type": Literal[entry.name]}  # type: ignore[valid-type]
    namespace: dict[str, Any] = {
        "__doc__": entry.description or title,
        "__module__": __name__,
        "model_config": ConfigDict(extra="forbid", allow_inf_nan=False, title=title),
    }
    if entry.kind == BACKBONE.name:
        annotations[PRETRAINED], namespace[PRETRAINED] = _pretrained_field(
            entry.params.model_fields.get(PRETRAINED)
        )
    namespace["__annotations__"] = annotations
    name = f"{entry.kind.capitalize()}_{entry.name}".replace("-", "_")
    return type(name, (entry.params,), namespace)


def component_field(registry: Registry) -> Any:
    """Annotation of a spec field holding one component of `registry`'s kind."""
    from pydantic import AfterValidator

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


def _logger_shorthand(value: Any) -> Any:
    """`train.loggers: [jsonl, csv]`: a bare name stands for `{type: NAME}`."""
    if isinstance(value, list):
        return [{"type": item} if isinstance(item, str) else item for item in value]
    return value


def _plain(items: list[Any]) -> list[Any]:
    """Spec models as dicts (names and mappings stay as they are)."""
    return [item.model_dump() if isinstance(item, BaseModel) else item for item in items]


def _one_output_each(loggers: list[BaseModel]) -> list[BaseModel]:
    """Refuse a logger listed twice with the same parameters: both would write the same output."""
    seen: dict[str, int] = {}
    for index, logger in enumerate(loggers):
        key = json.dumps(logger.model_dump(mode="json"), sort_keys=True)
        if key in seen:
            raise ValueError(
                f"entries {seen[key]} and {index} are the same {logger.type!r} logger and would write the "
                "same output; remove one, or give one another file (e.g. filename: other.csv)"
            )
        seen[key] = index
    return loggers


def loggers_field(registry: Registry) -> tuple[Any, FieldInfo]:
    """(annotation, field) of `train.loggers`: components of the logger registry, bare names allowed;
    the default is TrainSpec's (jsonl and csv) where those loggers are registered."""
    static = TrainSpec.model_fields["loggers"].default_factory()  # type: ignore[misc,call-arg]
    defaults = [item for item in _logger_shorthand(_plain(static)) if item.get("type") in registry]
    annotation = Annotated[
        list[component_field(registry)],  # type: ignore[misc]
        BeforeValidator(_logger_shorthand),
        AfterValidator(_one_output_each),
    ]
    description = TrainSpec.model_fields["loggers"].description
    names = registry.names()

    def bare_names_too(schema: dict[str, Any]) -> None:  # the JSON Schema accepts the shorthand
        if "items" in schema and names:
            bare = {"type": "string", "enum": names, "description": "a logger with default parameters"}
            schema["items"] = {"anyOf": [bare, schema["items"]]}

    return annotation, Field(
        default_factory=lambda: [dict(item) for item in defaults],
        validate_default=True,
        description=f"{description}; a bare name stands for {{type: NAME}}",
        json_schema_extra=bare_names_too,
    )


def spec_model(plugins: PluginManager) -> type[Spec]:
    """The `Spec` subclass that validates against the plugins' registries (cached per registry state)."""
    key = tuple((kind, tuple(reg.names())) for kind, reg in plugins.registries.items())
    cache = plugins.spec_model_cache
    if key not in cache:
        model_section = create_model(
            "ModelSpec",
            __base__=ModelSpec,
            __module__=__name__,
            backbone=(
                component_field(plugins.registry(BACKBONE.name)),
                Field(description="feature extractor"),
            ),
            head=(component_field(plugins.registry(HEAD.name)), Field(description="task head")),
        )
        dataset = component_field(plugins.registry(DATASET.name))
        data_section = create_model(
            "DataSpec",
            __base__=DataSpec,
            __module__=__name__,
            train=(dataset, Field(description="training dataset")),
            val=(dataset | None, Field(default=None, description="validation dataset")),
            augment=(
                list[component_field(plugins.registry(AUGMENTATION.name))],  # type: ignore[misc]
                Field(default_factory=list, description=DataSpec.model_fields["augment"].description),
            ),
        )
        attack = component_field(plugins.registry(ATTACK.name))
        adversarial_section = create_model(
            "AdversarialSpec",
            __base__=AdversarialSpec,
            __module__=__name__,
            attack=(attack, Field(description=AdversarialSpec.model_fields["attack"].description)),
        )
        train_section = create_model(
            "TrainSpec",
            __base__=TrainSpec,
            __module__=__name__,
            loss=(
                component_field(plugins.registry(LOSS.name)) | None,
                Field(default=None, description=TrainSpec.model_fields["loss"].description),
            ),
            adversarial=(
                adversarial_section | None,
                Field(default=None, description=TrainSpec.model_fields["adversarial"].description),
            ),
            loggers=loggers_field(plugins.registry(LOGGER.name)),
        )
        attack_section = create_model(
            "AttackSpec",
            __base__=AttackSpec,
            __module__=__name__,
            method=(attack, Field(description=AttackSpec.model_fields["method"].description)),
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
            attack=(
                attack_section | None,
                Field(default=None, description=Spec.model_fields["attack"].description),
            ),
        )
    return cache[key]


def json_schema_of(model: type[Spec]) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of spec files that `model` (a `spec_model`) validates."""
    schema = model.model_json_schema()
    schema["properties"] = {
        "extends": {
            "type": "string",
            "description": "a base spec file (relative to this one) merged under this file: mappings "
            "merge, lists and scalars replace (toolkit.spec.extends)",
        },
        **schema["properties"],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "toolkit spec",
        **{k: v for k, v in schema.items() if k != "title"},
    }
