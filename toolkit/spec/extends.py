"""Spec inheritance: `extends: base.yaml` (relative to the spec file, chained), merged before overrides.

Merging: mappings merge key by key (the extending file wins), lists and scalars replace; a mapping
naming another component `type` than its base (e.g. `optimizer: {type: sgd}` over adamw) replaces
the base mapping whole, since another component's parameters do not carry over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from toolkit.spec.files import SpecFileError, apply_overrides, read_one_file

EXTENDS = "extends"
MAX_CHAIN = 16


def deep_merge(base: Any, child: Any) -> Any:
    """`child` merged over `base`: mappings key by key, everything else replaced by `child`."""
    if not (isinstance(base, Mapping) and isinstance(child, Mapping)):
        return child
    if "type" in base and "type" in child and base["type"] != child["type"]:
        return dict(child)
    merged = dict(base)
    for key, value in child.items():
        merged[key] = deep_merge(base[key], value) if key in base else value
    return merged


def read_with_bases(path: Path) -> dict[str, Any]:
    """Read `path` and merge its `extends` chain in (bases first); errors name the chain."""
    return _read(path, [])


def resolve_extends(data: Mapping[str, Any], name: str, folder: Path) -> dict[str, Any]:
    """`data` (read from `name`) with its `extends` (relative to `folder`) merged in."""
    return _resolve(dict(data), name, folder, [name])


def _read(path: Path, chain: list[str]) -> dict[str, Any]:
    data = read_one_file(path)
    return _resolve(data, str(path), path.parent, [*chain, str(path)])


def _resolve(data: dict[str, Any], name: str, folder: Path, chain: list[str]) -> dict[str, Any]:
    if EXTENDS not in data:
        return data
    reference = data.pop(EXTENDS)
    if not isinstance(reference, str) or not reference.strip():
        raise SpecFileError(
            f"{name}: extends must be the path of a spec file (relative to this file), got {reference!r}"
        )
    base = folder / reference
    trail = " -> ".join([*chain, str(base)])
    if not base.is_file():
        hint = " (it is a directory)" if base.is_dir() else ""
        raise SpecFileError(
            f"{name}: extends {reference!r}, which is not a file{hint} (chain: {trail}); check the path"
        )
    seen = {_identity(Path(link)) for link in chain if Path(link).is_file()}
    if _identity(base) in seen:
        raise SpecFileError(f"{name}: extends {reference!r}, a cycle (chain: {trail}); remove one extends")
    if len(chain) >= MAX_CHAIN:
        raise SpecFileError(f"{name}: an extends chain of more than {MAX_CHAIN} files (chain: {trail})")
    return deep_merge(_read(base, chain), data)


def _identity(path: Path) -> str:
    return str(path.resolve())


def merged_spec(source: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The spec as validation sees it: the file with its `extends` chain merged, overrides applied."""
    if isinstance(source, Mapping):
        data = resolve_extends(source, "<dict>", Path.cwd())
    else:
        data = read_with_bases(Path(source))
    return apply_overrides(data, overrides)


def merged_spec_text(source: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()) -> str:
    """`merged_spec` as YAML, keys in file order (`toolkit validate --print`)."""
    return yaml.safe_dump(merged_spec(source, overrides), sort_keys=False, allow_unicode=True)
