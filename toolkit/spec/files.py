"""Reading spec files (YAML or JSON) and applying `key.sub=value` command-line overrides.

Parsing is bounded: a file of at most MAX_SPEC_BYTES, nesting of at most MAX_DEPTH levels, at most
MAX_VALUES values once YAML aliases are expanded (no recursive aliases), integers of at most
MAX_INT_DIGITS digits, no duplicate keys (YAML and JSON). Every violation is a SpecFileError.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from toolkit.errors import ToolkitError

MAX_SPEC_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_VALUES = 100_000
MAX_INT_DIGITS = 40


class SpecFileError(ToolkitError):
    """A spec file that cannot be read or parsed, or a malformed override."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader with bounds (depth, alias expansion, integer size) that rejects duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nesting deeper than {MAX_DEPTH} levels", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: Any) -> Any:
        _check_expansion(node)
        return super().construct_document(node)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse recursive aliases and documents of more than MAX_VALUES values with aliases expanded."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_VALUES:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"more than {MAX_VALUES} values once aliases (*name) are expanded; "
                    "a spec needs far fewer: use fewer aliases",
                    node.start_mark,
                )
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "an alias (*name) refers to its own anchor (a recursive structure)",
                node.start_mark,
            )
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "merge keys (<<) are not supported; use 'extends' or repeat the keys",
                key_node.start_mark,
            )
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a scalar, not a list or mapping", key_node.start_mark
            ) from None
        if key in mapping:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark
            )
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


def _construct_int(loader: _StrictLoader, node: yaml.ScalarNode) -> int:
    if len(str(node.value)) > MAX_INT_DIGITS:
        raise yaml.constructor.ConstructorError(
            None, None, f"an integer of more than {MAX_INT_DIGITS} digits", node.start_mark
        )
    return loader.construct_yaml_int(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)

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
    """Parse YAML safely and within bounds: duplicate keys rejected, YAML 1.2 floats such as `1e-3`.

    Raises yaml.YAMLError for invalid YAML and for YAML beyond the bounds.
    """
    return yaml.load(text, Loader=_StrictLoader)


class _JsonProblem(ValueError):
    """A JSON document beyond the bounds or with a duplicate key."""


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise _JsonProblem(f"duplicate key {key!r}")
        mapping[key] = value
    return mapping


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _JsonProblem(f"an integer of more than {MAX_INT_DIGITS} digits")
    return int(text)


def load_json(text: str) -> Any:
    """Parse JSON within the same bounds as YAML: duplicate keys, depth and integer size.

    Raises json.JSONDecodeError for invalid JSON, ValueError for JSON beyond the bounds.
    """
    try:
        data = json.loads(text, object_pairs_hook=_json_object, parse_int=_json_int)
    except RecursionError:
        raise _JsonProblem(f"nesting deeper than {MAX_DEPTH} levels") from None
    if _depth(data) > MAX_DEPTH:
        raise _JsonProblem(f"nesting deeper than {MAX_DEPTH} levels")
    return data


def _depth(data: Any) -> int:
    """Nesting depth of lists and mappings (a scalar: 0), without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is not None:
            deepest = max(deepest, level)
            if deepest > MAX_DEPTH:
                return deepest
            stack.extend((child, level + 1) for child in children)
    return deepest


def parse_spec_text(text: str, *, name: str, as_json: bool = False) -> dict[str, Any]:
    """Parse YAML (or JSON) text into a mapping; errors name the file, line and column."""
    try:
        data = load_json(text) if as_json else load_yaml(text)
    except json.JSONDecodeError as exc:
        raise SpecFileError(
            f"{name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except _JsonProblem as exc:
        raise SpecFileError(f"{name}: refused JSON: {exc}") from None
    except yaml.YAMLError as exc:
        raise SpecFileError(f"{name}: invalid YAML{_where(exc)}: {_problem(exc)}") from None
    if data is None:
        raise SpecFileError(f"{name}: the spec is empty; it needs at least a 'model' section")
    if not isinstance(data, dict):
        raise SpecFileError(f"{name}: the spec must be a mapping of sections, got {type(data).__name__}")
    return data


def _where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _problem(exc: yaml.YAMLError) -> str:
    return str(getattr(exc, "problem", None) or exc).replace("\n", " ")


def read_spec_text(path: str | Path) -> str:
    """The text of a spec file, at most MAX_SPEC_BYTES; SpecFileError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        hint = " (it is a directory)" if path.is_dir() else ""
        raise SpecFileError(f"spec file {str(path)!r} not found{hint}; check the path")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SPEC_BYTES + 1)
        if len(data) > MAX_SPEC_BYTES:
            raise SpecFileError(
                f"spec file {str(path)!r} is larger than {MAX_SPEC_BYTES} bytes; is it really a spec?"
            )
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecFileError(f"cannot read spec file {str(path)!r}: {exc}") from None


def read_one_file(path: Path) -> dict[str, Any]:
    """One spec file as a mapping, `extends` left as it is."""
    return parse_spec_text(read_spec_text(path), name=str(path), as_json=path.suffix.lower() == ".json")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into its key path and its value, parsed as YAML (never evaluated)."""
    key, sep, raw_value = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not key.strip() or any(not part.strip() for part in parts):
        raise SpecFileError(
            f"override {_shown(text)} must look like key.sub=value, e.g. model.input_size=256"
        )
    if len(parts) > MAX_DEPTH:
        raise SpecFileError(f"override {_shown(text)}: a key path of more than {MAX_DEPTH} parts")
    try:
        value = load_yaml(raw_value) if raw_value.strip() else None
    except yaml.YAMLError as exc:
        raise SpecFileError(f"override {_shown(text)}: value is not valid YAML ({_problem(exc)})") from None
    return [part.strip() for part in parts], value


def _shown(text: str, limit: int = 80) -> str:
    """An override quoted for a message, shortened when long."""
    return repr(text) if len(text) <= limit else repr(text[: limit - 3] + "...")


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
    raise SpecFileError(f"override {_shown(text)}: {'.'.join(trail[:-1])} is a value, not a section")


def _assign(node: Any, part: str, value: Any, text: str) -> None:
    if isinstance(node, dict):
        node[part] = value
    elif isinstance(node, list):
        node[_list_index(node, part, text)] = value
    else:
        raise SpecFileError(f"override {_shown(text)}: cannot set {_shown(part, 24)} inside a value")


def _list_index(node: list, part: str, text: str) -> int:
    if not re.fullmatch(r"-?[0-9]{1,9}", part) or not -len(node) <= int(part) < len(node):
        raise SpecFileError(
            f"override {_shown(text)}: {_shown(part, 24)} is not an index of a list of {len(node)}"
        )
    return int(part)


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data
