"""One registry per component kind: register, get, list, suggest; records who registered what."""

from __future__ import annotations

import importlib.util
import inspect
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

from toolkit.errors import DuplicateComponentError, PluginError, UnknownComponentError
from toolkit.kinds import BACKBONE, KINDS

__all__ = [
    "KINDS",
    "OPTIONAL_COMPONENTS",
    "ComponentEntry",
    "MissingExtraError",
    "OptionalComponent",
    "PluginInfo",
    "Registry",
    "missing_extra_hint",
    "params_from_signature",
]


@dataclass(frozen=True)
class OptionalComponent:
    """A built-in component that registers only when an optional extra of toolkit is installed."""

    extra: str  # pip install 'toolkit[extra]'
    modules: tuple[str, ...]  # the importable modules the extra provides


#: (kind, name) -> the extra that provides it; an unknown name found here is told what to install
OPTIONAL_COMPONENTS: dict[tuple[str, str], OptionalComponent] = {
    (BACKBONE.name, "timm"): OptionalComponent(extra="timm", modules=("timm",)),
}


def missing_extra_hint(kind: str, name: str) -> str | None:
    """The one-line fix for an unknown `kind` `name` that an uninstalled extra provides, else None.

    None too when the extra's modules are importable: the component is missing for another reason
    (its plugin is disabled or failed to load), which the usual unknown-component message covers.
    """
    optional = OPTIONAL_COMPONENTS.get((kind, name))
    if optional is None or all(_importable(module) for module in optional.modules):
        return None
    return f"{kind} {name!r} needs the optional extra: pip install 'toolkit[{optional.extra}]'"


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class MissingExtraError(UnknownComponentError):
    """An unknown component that an optional extra provides; the message names the extra."""

    def __init__(self, kind: str, name: str, hint: str, *, path: str | None = None) -> None:
        self.hint = hint
        super().__init__(kind, name, known=(), path=path)

    def describe(self) -> str:
        return f"{self.path}: {self.hint}" if self.path else self.hint


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin came from: its name, module and (when installed) distribution."""

    name: str
    module: str
    source: str  # "entry point", "-p", "TOOLKIT_PLUGINS", "spec", "api"
    distribution: str | None = None
    version: str | None = None
    import_seconds: float | None = None  # how long importing its module took (None: not imported here)
    imported_torch: bool = False  # torch was first imported by this plugin's module

    def describe(self) -> str:
        dist = f" from {self.distribution} {self.version}" if self.distribution else ""
        return f"plugin {self.name!r} (module {self.module}{dist})"


API_PLUGIN = PluginInfo(name="api", module="<python api>", source="api")


@dataclass(frozen=True)
class ComponentEntry:
    """A registered component: its factory, the pydantic model of its parameters, its origin."""

    kind: str
    name: str
    factory: Callable[..., Any]
    params: type[BaseModel]
    description: str
    plugin: PluginInfo = field(compare=False)
    #: input sides must be multiples of this (an int, or computed from the validated params);
    #: lets `toolkit validate` check model.input_size without building anything
    input_multiple: Callable[[BaseModel], int] | int | None = field(default=None, compare=False)

    def static_input_multiple(self, params: BaseModel) -> int | None:
        """The declared input multiple for these params, or None when the plugin declares none."""
        if self.input_multiple is None:
            return None
        value = self.input_multiple(params) if callable(self.input_multiple) else self.input_multiple
        return int(value)

    def build(self, params: BaseModel | dict[str, Any] | None = None, **injected: Any) -> Any:
        """Call the factory with validated parameters plus the builder-supplied arguments it declares."""
        if params is None or isinstance(params, dict):
            params = self.params.model_validate(params or {})
        kwargs = {name: getattr(params, name) for name in type(params).model_fields if name != "type"}
        accepted = _accepted_arguments(self.factory)
        offered = {k: v for k, v in injected.items() if accepted is None or k in accepted}
        return self.factory(**kwargs, **offered)


def _accepted_arguments(factory: Callable[..., Any]) -> set[str] | None:
    """Names the factory accepts as keywords; None when it takes **kwargs."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


class Registry:
    """Components of one kind.

    `injected` names the arguments the builder offers to factories (e.g. a head's `num_classes`);
    a factory receives those it declares, and they never appear in its params model.
    """

    def __init__(self, kind: str, *, injected: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.injected = frozenset(injected)
        self._entries: dict[str, ComponentEntry] = {}
        self._current_plugin: PluginInfo = API_PLUGIN
        self.failed_plugins: list[str] = []

    def register(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        params: type[BaseModel] | None = None,
        description: str | None = None,
        input_multiple: Callable[[BaseModel], int] | int | None = None,
    ) -> ComponentEntry:
        """Register `factory` under `name`.

        `params` is a pydantic model of the spec-settable parameters; when omitted it is derived
        from the factory's type-hinted signature (arguments in `injected` excluded).
        `input_multiple` (backbones, heads): what input sides must be multiples of, as an int or a
        function of the validated params; without it the builder reads it off the built object.
        """
        if (
            not isinstance(name, str)
            or not name
            or not name.isascii()
            or not name.replace("_", "").replace("-", "").isalnum()
        ):
            raise PluginError(
                f"{self._current_plugin.describe()} registered {self.kind} name {name!r}: "
                "use ASCII letters, digits, '_' or '-' (a look-alike such as Cyrillic ie would print like "
                "another name)"
            )
        if not callable(factory):
            raise PluginError(
                f"{self._current_plugin.describe()} registered {self.kind} {name!r} "
                f"with a factory that is not callable: {factory!r}"
            )
        previous = self._entries.get(name)
        if previous is not None:
            raise DuplicateComponentError(
                f"{self.kind} {name!r} is registered twice: by {previous.plugin.describe()} and by "
                f"{self._current_plugin.describe()}; disable one with '-p no:NAME'"
            )
        params_model = params if params is not None else params_from_signature(self, name, factory)
        if not (isinstance(params_model, type) and issubclass(params_model, BaseModel)):
            raise PluginError(
                f"{self._current_plugin.describe()}: params of {self.kind} {name!r} must be a "
                f"pydantic BaseModel subclass, got {params_model!r}"
            )
        clash = (self.injected | {"type"}) & set(params_model.model_fields)
        if clash:
            raise PluginError(
                f"{self._current_plugin.describe()}: params of {self.kind} {name!r} declare "
                f"{sorted(clash)}, which the builder supplies; remove them from the params model"
            )
        doc = description if description is not None else _first_doc_line(factory)
        if (
            input_multiple is not None
            and not callable(input_multiple)
            and not (isinstance(input_multiple, int) and input_multiple >= 1)
        ):
            raise PluginError(
                f"{self._current_plugin.describe()}: input_multiple of {self.kind} {name!r} must be a "
                f"positive int or a function of the params, got {input_multiple!r}"
            )
        entry = ComponentEntry(
            self.kind, name, factory, params_model, doc, self._current_plugin, input_multiple
        )
        self._entries[name] = entry
        return entry

    def get(self, name: str, *, path: str | None = None) -> ComponentEntry:
        """Return the entry for `name`, else raise UnknownComponentError with suggestions
        (MissingExtraError when an uninstalled extra of toolkit provides it)."""
        try:
            return self._entries[name]
        except KeyError:
            hint = missing_extra_hint(self.kind, name)
            if hint is not None:
                raise MissingExtraError(self.kind, name, hint, path=path) from None
            raise UnknownComponentError(
                self.kind, name, known=self._entries, path=path, failed_plugins=self.failed_plugins
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[ComponentEntry]:
        return [self._entries[name] for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[ComponentEntry]:
        return iter(self.entries())

    def remove_plugin(self, plugin_name: str) -> None:
        """Drop every entry registered by `plugin_name` (used when its registration fails)."""
        self._entries = {k: e for k, e in self._entries.items() if e.plugin.name != plugin_name}

    @contextmanager
    def registering_as(self, plugin: PluginInfo) -> Iterator[Registry]:
        """Attribute registrations made inside the block to `plugin`."""
        previous, self._current_plugin = self._current_plugin, plugin
        try:
            yield self
        finally:
            self._current_plugin = previous

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def params_from_signature(registry: Registry, name: str, factory: Callable[..., Any]) -> type[BaseModel]:
    """Build a strict pydantic model from the factory's keyword parameters and their type hints."""
    owner = registry._current_plugin.describe()
    try:
        signature = inspect.signature(factory)
        hints = _parameter_hints(factory)
    except (TypeError, ValueError, NameError) as exc:
        raise PluginError(
            f"{owner}: cannot read the signature of {registry.kind} {name!r} ({exc}); pass params="
        ) from exc
    fields: dict[str, Any] = {}
    for pname, parameter in signature.parameters.items():
        if pname in registry.injected or parameter.kind in (
            parameter.VAR_POSITIONAL,
            parameter.VAR_KEYWORD,
        ):
            continue
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise PluginError(f"{owner}: {registry.kind} {name!r} has positional-only parameter {pname!r}")
        if pname not in hints:
            raise PluginError(
                f"{owner}: parameter {pname!r} of {registry.kind} {name!r} has no type hint; "
                "add one or pass params="
            )
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[pname] = (hints[pname], default)
    model_name = "".join(
        part.capitalize() for part in f"{name}_{registry.kind}_params".replace("-", "_").split("_")
    )
    return create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)


def _parameter_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """Type hints of the factory's parameters; the return annotation is never evaluated.

    Plugins keep heavy imports (torch) inside their factories, so `-> nn.Module` may name
    something their module does not import at load time.
    """
    function = factory.__init__ if isinstance(factory, type) else factory
    function = getattr(function, "__func__", function)
    if not isinstance(function, types.FunctionType):
        return typing.get_type_hints(function, include_extras=True)
    shim = types.FunctionType(
        function.__code__,
        function.__globals__,
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )
    shim.__annotations__ = {k: v for k, v in function.__annotations__.items() if k != "return"}
    return typing.get_type_hints(shim, include_extras=True)


def _first_doc_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
