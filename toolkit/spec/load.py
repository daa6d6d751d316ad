"""`load_spec`: read a file or mapping (its `extends` chain merged), apply overrides, load the spec's
plugins, validate, check.

Beyond the pydantic models, two checks need the registry: augmentations that moved elsewhere
(`normalize` is now `model.normalize`), and the input size against the input multiple that the
backbone and head declare at registration (the builder checks the built objects as well).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from toolkit.kinds import BACKBONE, HEAD
from toolkit.plugins import PluginManager, get_plugin_manager
from toolkit.registry import Registry
from toolkit.spec.derived import component_model, spec_model
from toolkit.spec.errors import SpecError, SpecIssue, describe_errors
from toolkit.spec.extends import EXTENDS, read_with_bases, resolve_extends
from toolkit.spec.files import apply_overrides
from toolkit.spec.models import InputSize, Spec

#: augmentation types that left data.augment, and where they went
MOVED_AUGMENTATIONS = {
    "normalize": "the model normalizes its [0, 1] input itself: set model.normalize: {mean: [...], "
    "std: [...]} (default: the backbone's statistics, ImageNet's for ResNets) and remove this entry",
}


def load_spec(
    source: str | Path | Mapping[str, Any] | Spec,
    overrides: Sequence[str] = (),
    *,
    plugins: PluginManager | None = None,
    name: str | None = None,
) -> Spec:
    """Read (YAML/JSON file or mapping), apply `key.sub=value` overrides, load the spec's plugins, validate.

    `name` names a mapping's origin in messages and as `spec.source` (e.g. "checkpoint runs/a/best.pt";
    default "<dict>"). Raises SpecError listing every problem with its path.
    """
    manager = plugins or get_plugin_manager()
    if isinstance(source, Spec):
        source, name = source.model_dump(mode="json"), source.source
    elif isinstance(source, Mapping):
        name = name or "<dict>"
        source = resolve_extends(source, name, Path.cwd())
    else:
        name = str(source)
        source = read_with_bases(Path(source))
    raw = apply_overrides(dict(source), overrides)
    if EXTENDS in raw:
        raise SpecError(name, [SpecIssue(EXTENDS, "set it in the spec file, not as an override")])
    plugin_modules = raw.get("plugins", [])
    if not isinstance(plugin_modules, list) or not all(isinstance(m, str) for m in plugin_modules):
        raise SpecError(name, [SpecIssue("plugins", "must be a list of module names")])
    manager.add_modules(plugin_modules, source="spec")
    model = spec_model(manager)
    infinite = non_finite_numbers(raw)
    moved = _moved_augmentations(raw)
    removed = [int(issue.path.split(".")[2]) for issue in moved]
    if moved:  # validate the rest too, so that every problem is reported at once
        raw = _without(raw, removed)
    sizes = _input_size_issues(raw, manager.registries)
    try:
        spec = model.model_validate(raw)
    except ValidationError as exc:
        issues = [
            _original_index(issue, removed) for issue in describe_errors(model, exc, manager.registries)
        ]
        seen = {issue.path for issue in issues}
        infinite = [issue for issue in infinite if issue.path not in seen]
        raise SpecError(name, [*moved, *issues, *infinite, *sizes]) from None
    if moved or sizes or infinite:
        raise SpecError(name, [*moved, *infinite, *sizes])
    spec._source = name
    return spec


def non_finite_numbers(raw: Any) -> list[SpecIssue]:
    """An issue for each infinite or NaN number anywhere in the raw spec (fields typed Any included)."""
    issues: list[SpecIssue] = []
    stack: list[tuple[Any, tuple[str, ...]]] = [(raw, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            issues.append(SpecIssue(".".join(path), f"must be a finite number, got {node}"))
        elif isinstance(node, Mapping):
            stack.extend((value, (*path, str(key))) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((value, (*path, str(index))) for index, value in enumerate(node))
    return sorted(issues, key=lambda issue: issue.path)


def _moved_augmentations(raw: Mapping[str, Any]) -> list[SpecIssue]:
    data = raw.get("data")
    augment = data.get("augment") if isinstance(data, Mapping) else None
    if not isinstance(augment, list):
        return []
    return [
        SpecIssue(
            f"data.augment.{index}.type",
            f"{item['type']!r} is no longer an augmentation: {MOVED_AUGMENTATIONS[item['type']]}",
        )
        for index, item in enumerate(augment)
        if isinstance(item, Mapping)
        and isinstance(item.get("type"), str)
        and item["type"] in MOVED_AUGMENTATIONS
    ]


def _original_index(issue: SpecIssue, removed: list[int]) -> SpecIssue:
    """An issue at data.augment.K of the spec without the removed entries, at its index in the file."""
    parts = issue.path.split(".")
    if removed and parts[:2] == ["data", "augment"] and len(parts) > 2 and parts[2].isdigit():
        index = int(parts[2])
        for gone in sorted(removed):
            index += gone <= index
        return SpecIssue(".".join([*parts[:2], str(index), *parts[3:]]), issue.message)
    return issue


def _without(raw: dict[str, Any], indices: list[int]) -> dict[str, Any]:
    data = dict(raw["data"])
    data["augment"] = [item for index, item in enumerate(data["augment"]) if index not in indices]
    return {**raw, "data": data}


def declared_input_multiple(spec: Spec, registries: Mapping[str, Registry]) -> tuple[int, str] | None:
    """The input multiple the spec's backbone and head declare at registration, and who sets it.

    None when neither declares one (the builder then reads it off the built objects).
    """
    return _declared({BACKBONE.name: spec.model.backbone, HEAD.name: spec.model.head}, registries)


def _declared(refs: Mapping[str, Any], registries: Mapping[str, Registry]) -> tuple[int, str] | None:
    found: list[tuple[int, str]] = []
    for kind, ref in refs.items():
        entry = registries[kind].get(ref.type)
        value = entry.static_input_multiple(ref)
        if value is not None:
            found.append((value, f"{kind} {ref.type!r}"))
    if not found:
        return None
    return math.lcm(*(value for value, _ in found)), " and ".join(who for _, who in found)


def input_size_problem(input_size: Sequence[int], multiple: int, who: str) -> str | None:
    """A message when a side of `input_size` is not a multiple of `multiple`, else None."""
    bad = [side for side in input_size if side % multiple]
    if not bad:
        return None
    side = bad[0]
    lower = max(multiple, side // multiple * multiple)
    return (
        f"each side must be a multiple of {multiple} (the largest stride of {who}), got {side}; "
        f"use {lower} or {lower + multiple}"
    )


def _input_size_issues(raw: Mapping[str, Any], registries: Mapping[str, Registry]) -> list[SpecIssue]:
    """The input size against the declared input multiple, from the raw spec: reported together
    with the other problems even when some other part of the spec does not validate."""
    from pydantic import TypeAdapter

    section = raw.get("model")
    if not isinstance(section, Mapping):
        return []
    refs: dict[str, Any] = {}
    try:
        size = TypeAdapter(InputSize).validate_python(section.get("input_size"))
    except ValidationError:
        return []  # reported by the full validation
    for kind in (BACKBONE.name, HEAD.name):
        item = section.get(kind)
        registry = registries[kind]
        if (
            not isinstance(item, Mapping)
            or not all(isinstance(key, str) for key in item)
            or not isinstance(item.get("type"), str)
            or item["type"] not in registry
        ):
            return []
        model = component_model(registry.get(item["type"]))
        try:
            refs[kind] = model.model_validate(item)
        except ValidationError:  # other fields are wrong: the declared multiple may still be known
            refs[kind] = model.model_construct(**item)
    try:
        declared = _declared(refs, registries)
    except Exception:  # a declaration that needs the invalid fields: the full validation reports them
        return []
    problem = input_size_problem(size, *declared) if declared else None
    return [SpecIssue("model.input_size", problem)] if problem else []
