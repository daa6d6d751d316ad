"""toolkit: plugin-based detection and classification, every experiment a spec file.

Importing `toolkit` stays light (no torch): the API below is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from toolkit.hookspecs import hookimpl

__version__ = "0.1.0"

if TYPE_CHECKING:
    from toolkit.build import build_model, load_model
    from toolkit.engine.trainer import train
    from toolkit.errors import ToolkitError, UnknownComponentError
    from toolkit.plugins import PluginManager, get_plugin_manager
    from toolkit.registry import Registry
    from toolkit.spec import Spec, SpecError, load_spec, spec_json_schema

_LAZY = {
    "build_model": "toolkit.build",
    "train": "toolkit.engine.trainer",
    "load_model": "toolkit.build",
    "load_spec": "toolkit.spec",
    "Spec": "toolkit.spec",
    "SpecError": "toolkit.spec",
    "spec_json_schema": "toolkit.spec",
    "Registry": "toolkit.registry",
    "PluginManager": "toolkit.plugins",
    "get_plugin_manager": "toolkit.plugins",
    "ToolkitError": "toolkit.errors",
    "UnknownComponentError": "toolkit.errors",
}

__all__ = [
    "PluginManager",
    "Registry",
    "Spec",
    "SpecError",
    "ToolkitError",
    "UnknownComponentError",
    "__version__",
    "build_model",
    "get_plugin_manager",
    "hookimpl",
    "load_model",
    "load_spec",
    "spec_json_schema",
    "train",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
