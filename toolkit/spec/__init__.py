"""Spec files: pydantic models validated against the plugin registries, files and overrides, errors.

`load_spec` reads a YAML/JSON file (or a mapping), merges its `extends` chain, applies
`key.sub=value` overrides, loads the spec's plugins and validates; `merged_spec_text` shows what
validation sees; `spec_json_schema` is the JSON Schema editors use.
"""

from typing import Any

from toolkit.plugins import PluginManager, get_plugin_manager
from toolkit.spec.base import ComponentSpec, StrictModel
from toolkit.spec.derived import json_schema_of, spec_model
from toolkit.spec.errors import SpecError, SpecIssue
from toolkit.spec.extends import merged_spec, merged_spec_text
from toolkit.spec.load import load_spec
from toolkit.spec.models import (
    AttackSpec,
    DataSpec,
    ExportSpec,
    ModelSpec,
    NormalizeSpec,
    PredictSpec,
    Spec,
    TileSpec,
)
from toolkit.spec.train import TrainSpec


def spec_json_schema(plugins: PluginManager | None = None) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of spec files, including every loaded plugin's components."""

    return json_schema_of(spec_model(plugins or get_plugin_manager()))


__all__ = [
    "AttackSpec",
    "ComponentSpec",
    "DataSpec",
    "ExportSpec",
    "ModelSpec",
    "NormalizeSpec",
    "PredictSpec",
    "Spec",
    "SpecError",
    "SpecIssue",
    "StrictModel",
    "TileSpec",
    "TrainSpec",
    "load_spec",
    "merged_spec",
    "merged_spec_text",
    "spec_json_schema",
    "spec_model",
]
