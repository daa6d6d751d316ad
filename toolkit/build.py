"""Spec -> objects: components from the registries, the backbone + head model."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import PluginError, ToolkitError
from toolkit.plugins import PluginManager, get_plugin_manager
from toolkit.spec import ComponentSpec, ModelSpec, Spec, load_spec

if TYPE_CHECKING:
    from toolkit.model import ToolkitModel


def build_component(
    kind: str,
    ref: ComponentSpec,
    *,
    path: str,
    plugins: PluginManager | None = None,
    **injected: Any,
) -> Any:
    """Build the registered component `ref.type` of `kind` with its validated parameters."""
    manager = plugins or get_plugin_manager()
    entry = manager.registry(kind).get(ref.type, path=f"{path}.type")
    params = ref if isinstance(ref, entry.params) else entry.params.model_validate(_params_of(ref))
    return entry.build(params, **injected)


def build_model(
    spec: Spec | ModelSpec | Mapping[str, Any] | str | Path,
    *,
    plugins: PluginManager | None = None,
) -> ToolkitModel:
    """Build backbone + head from a spec (object, mapping or file path) and check their contracts."""
    from torch import nn

    from toolkit.model import ToolkitModel

    manager = plugins or get_plugin_manager()
    if not isinstance(spec, (Spec, ModelSpec)):
        spec = load_spec(spec, plugins=manager)
    model_spec = spec.model if isinstance(spec, Spec) else spec
    backbone = build_component("backbone", model_spec.backbone, path="model.backbone", plugins=manager)
    _check_contract(
        manager, "backbone", model_spec.backbone.type, backbone, nn.Module, ("out_channels", "stride")
    )
    levels = _levels_of(backbone)
    head = build_component(
        "head",
        model_spec.head,
        path="model.head",
        plugins=manager,
        in_channels=int(backbone.out_channels),
        stride=int(backbone.stride),
        num_classes=model_spec.num_classes,
        levels=levels,
    )
    _check_contract(manager, "head", model_spec.head.type, head, nn.Module, ("task", "decode"))
    if getattr(head, "uses_levels", False) and levels is None:
        raise ToolkitError(
            f"head {model_spec.head.type!r} needs the backbone's feature levels, but backbone "
            f"{model_spec.backbone.type!r} offers none (no `levels` / `forward_levels`); choose a backbone "
            "with levels or configure the head without skip connections"
        )
    return ToolkitModel(backbone, head, class_names=model_spec.class_names, input_size=model_spec.input_size)


def _levels_of(backbone: Any) -> tuple[tuple[int, int], ...] | None:
    """The backbone's optional feature levels ((channels, stride), finest first), or None."""
    levels = getattr(backbone, "levels", None)
    if levels is None or not callable(getattr(backbone, "forward_levels", None)):
        return None
    return tuple((int(channels), int(stride)) for channels, stride in levels)


def _params_of(ref: ComponentSpec) -> dict[str, Any]:
    data = ref.model_dump()
    data.pop("type", None)
    return data


def _check_contract(
    manager: PluginManager, kind: str, name: str, obj: Any, base: type, attributes: tuple[str, ...]
) -> None:
    entry = manager.registry(kind).get(name)
    missing = [attr for attr in attributes if not hasattr(obj, attr)]
    if not isinstance(obj, base) or missing:
        problem = (
            f"lacks {', '.join(missing)}" if missing else f"is a {type(obj).__name__}, not {base.__name__}"
        )
        raise PluginError(
            f"{kind} {name!r} from {entry.plugin.describe()} breaks the {kind} contract: "
            f"the object it built {problem}"
        )
