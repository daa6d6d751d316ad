"""Reading spec files (YAML or JSON) and applying `key.sub=value` command-line overrides."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from toolkit.errors import ToolkitError


class SpecFileError(ToolkitError):
    """A spec file that cannot be read or parsed, or a malformed override."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of keeping the last one silently."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark
            )
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

# YAML 1.2 floats: PyYAML (YAML 1.1) reads `1e-3` (no dot) as a string; learning rates look like that.
_FLOAT_12 = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_StrictLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """Parse YAML safely: duplicate keys rejected, YAML 1.2 floats such as `1e-3`."""
    return yaml.load(text, Loader=_StrictLoader)


def parse_spec_text(text: str, *, name: str, as_json: bool = False) -> dict[str, Any]:
    """Parse YAML (or JSON) text into a mapping; errors name the file, line and column."""
    try:
        data = json.loads(text) if as_json else yaml.load(text, Loader=_StrictLoader)
    except json.JSONDecodeError as exc:
        raise SpecFileError(
            f"{name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecFileError(f"{name}: invalid YAML{where}: {problem}") from None
    if data is None:
        raise SpecFileError(f"{name}: the spec is empty; it needs at least a 'model' section")
    if not isinstance(data, dict):
        raise SpecFileError(f"{name}: the spec must be a mapping of sections, got {type(data).__name__}")
    return data


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """Read a `.yaml`/`.yml`/`.json` spec file into a mapping."""
    path = Path(path)
    if not path.is_file():
        hint = " (it is a directory)" if path.is_dir() else ""
        raise SpecFileError(f"spec file {str(path)!r} not found{hint}; check the path")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecFileError(f"cannot read spec file {str(path)!r}: {exc}") from None
    return parse_spec_text(text, name=str(path), as_json=path.suffix.lower() == ".json")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into its key path and its value, parsed as YAML (never evaluated)."""
    key, sep, raw_value = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not key.strip() or any(not part.strip() for part in parts):
        raise SpecFileError(f"override {text!r} must look like key.sub=value, e.g. model.input_size=256")
    try:
        value = load_yaml(raw_value) if raw_value.strip() else None
    except yaml.YAMLError as exc:
        raise SpecFileError(f"override {text!r}: value is not valid YAML ({exc})") from None
    return [part.strip() for part in parts], value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of `data` with each `key.sub=value` override set (sections created as needed)."""
    result = _deep_copy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = result
        for depth, part in enumerate(parts[:-1]):
            node = _child(node, part, parts[: depth + 1], text)
        _assign(node, parts[-1], value, text)
    return result


def _child(node: Any, part: str, trail: list[str], text: str) -> Any:
    if isinstance(node, dict):
        if node.get(part) is None:
            node[part] = {}
        return node[part]
    if isinstance(node, list):
        return node[_list_index(node, part, text)]
    raise SpecFileError(f"override {text!r}: {'.'.join(trail[:-1])} is a value, not a section")


def _assign(node: Any, part: str, value: Any, text: str) -> None:
    if isinstance(node, dict):
        node[part] = value
    elif isinstance(node, list):
        node[_list_index(node, part, text)] = value
    else:
        raise SpecFileError(f"override {text!r}: cannot set {part!r} inside a value")


def _list_index(node: list, part: str, text: str) -> int:
    if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
        raise SpecFileError(f"override {text!r}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data
