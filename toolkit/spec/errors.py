"""Spec validation errors: pydantic errors turned into path-named issues with suggestions."""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from toolkit.errors import ToolkitError, UnknownComponentError, closest
from toolkit.kinds import injected_from
from toolkit.registry import Registry, missing_extra_hint

KIND_KEY = "x-toolkit-kind"


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a spec: where (dotted path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(ToolkitError):
    """A spec that does not validate; carries every problem found, each with its path."""

    def __init__(self, source: str, issues: Sequence[SpecIssue]) -> None:
        self.source = source
        self.issues = list(issues)
        count = f"{len(self.issues)} problem{'s' if len(self.issues) != 1 else ''}"
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        super().__init__(f"{source}: {count} in the spec:\n{lines}")


def describe_errors(
    model: type[BaseModel], error: ValidationError, registries: Mapping[str, Registry]
) -> list[SpecIssue]:
    """Turn pydantic errors into path-named issues with suggestions."""
    issues: list[SpecIssue] = []
    for item in error.errors(include_url=False):
        path, parent, kind = _walk(model, item["loc"])
        message = _message(item, parent, kind, registries, path)  # may extend the path
        issues.append(SpecIssue(".".join(path), message))
    return issues


def _message(
    item: Mapping[str, Any],
    parent: type[BaseModel] | None,
    kind: str | None,
    registries: Mapping[str, Registry],
    path: list[str],
) -> str:
    kind_of_error = item["type"]
    ctx = item.get("ctx") or {}
    if kind_of_error == "extra_forbidden":
        return _unknown_field(str(item["loc"][-1]), parent, kind, registries, path[:-1])
    if kind_of_error == "missing":
        return "required field is missing"
    if kind_of_error in {"union_tag_invalid", "union_tag_not_found"} and kind:
        path.append("type")
    if kind_of_error == "union_tag_invalid" and kind:
        hint = missing_extra_hint(kind, str(ctx.get("tag")))
        if hint is not None:
            return hint
        registry = registries[kind]
        return UnknownComponentError(
            kind,
            str(ctx.get("tag")),
            known=registry.names(),
            failed_plugins=registry.failed_plugins,
        ).describe()
    if kind_of_error == "union_tag_not_found" and kind:
        names = ", ".join(registries[kind].names())
        article = "an" if kind[:1] in "aeiou" else "a"
        return f"missing 'type': name {article} {kind} ({names})"
    if kind_of_error == "union_tag_not_found" and parent is not None and path:
        field = parent.model_fields.get(path[-1])
        tags = sorted(_union_members(_unwrap(field.annotation)[0])) if field else []
        if tags:
            path.append("type")
            return f"missing 'type': one of {', '.join(tags)}"
    if kind_of_error == "union_tag_invalid":
        path.append("type")
        expected = [tag.strip(" '") for tag in str(ctx.get("expected_tags", "")).split(",") if tag.strip()]
        hint = closest(str(ctx.get("tag")), expected)
        suggestion = f" (did you mean {' or '.join(hint)}?)" if hint else ""
        return f"unknown type {ctx.get('tag')!r}{suggestion}; expected one of: {', '.join(expected)}"
    if kind_of_error in {"model_attributes_type", "model_type", "dict_type"}:
        return f"expected a mapping, got {_show(item.get('input'))}"
    message = str(item["msg"])
    message = message.removeprefix("Value error, ")
    value = item.get("input")
    if not isinstance(value, (dict, list)) and str(value) not in message:
        message += f" (got {_show(value)})"
    return message


def _unknown_field(
    name: str,
    parent: type[BaseModel] | None,
    kind: str | None,
    registries: Mapping[str, Registry],
    prefix: Sequence[str] = (),
) -> str:
    known = [field for field in (parent.model_fields if parent else {}) if field != "type"]
    injected = (
        sorted(registries[kind].injected)
        if kind and parent is not None and "type" in parent.model_fields
        else []
    )
    if name in injected:
        return f"{name} is set from {injected_from(name)}; remove it here"
    hint = closest(name, [*known, *injected])
    if hint and hint[0] in injected:
        source = injected_from(hint[0])
        return f"unknown field (did you mean {hint[0]}? it is set from {source}; remove it here)"
    if not hint and parent is not None:
        hint = [".".join([*prefix, *found]) for found in nested_fields(parent, name)]
    suggestion = f" (did you mean {' or '.join(hint)}?)" if hint else ""
    allowed = f"; allowed: {', '.join(known)}" if known and not hint else ""
    return f"unknown field{suggestion}{allowed}"


def nested_fields(model: type[BaseModel], name: str, depth: int = 3) -> list[tuple[str, ...]]:
    """Paths (below `model`, nearest level first) of fields called `name`, or else close to it.

    A flat key such as `epochs` or `lr` thus points to `train.epochs` or `train.optimizer.lr`.
    """
    levels: list[list[tuple[tuple[str, ...], str]]] = []
    frontier: list[tuple[tuple[str, ...], type[BaseModel]]] = [((), model)]
    for _ in range(depth):
        level: list[tuple[tuple[str, ...], str]] = []
        deeper: list[tuple[tuple[str, ...], type[BaseModel]]] = []
        for prefix, current in frontier:
            for field_name, info in current.model_fields.items():
                path = (*prefix, field_name)
                if prefix and field_name != "type":
                    level.append((path, field_name))
                deeper += [(path, sub) for sub in _models_in(info)]
        levels.append(level)
        frontier = deeper
    for match in (lambda field: field == name, lambda field: bool(closest(name, [field], n=1))):
        for level in levels:
            found = list(dict.fromkeys(path for path, field in level if match(field)))
            if found:
                return found[:3]
    return []


def _models_in(info: FieldInfo) -> list[type[BaseModel]]:
    """The models a field holds directly (through Optional, Annotated and unions, not lists)."""
    annotation, _, _ = _unwrap(info.annotation)
    members = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    found = []
    for member in members:
        member = _unwrap(member)[0]
        if isinstance(member, type) and issubclass(member, BaseModel):
            found.append(member)
    return found


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _walk(model: type[BaseModel], loc: Sequence[Any]) -> tuple[list[str], type[BaseModel] | None, str | None]:
    """Follow a pydantic error location through the spec model.

    Returns the displayed path (union tags left out), the model that holds the last element and
    the component kind when the location passes through a component field.
    """
    path: list[str] = []
    parent: type[BaseModel] | None = None
    kind: str | None = None
    annotation: Any = model
    discriminator: str | None = None
    for part in loc:
        annotation, found_discriminator, found_kind = _unwrap(annotation)
        discriminator = discriminator or found_discriminator
        kind = found_kind or kind
        if discriminator is not None:  # this element is the union tag pydantic inserts
            annotation, discriminator = _union_members(annotation).get(str(part)), None
            continue
        path.append(str(part))
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            parent = annotation
            field = annotation.model_fields.get(part) if isinstance(part, str) else None
            annotation = field.annotation if field else None
            discriminator = field.discriminator if field else None  # type: ignore[assignment]
            kind = (_field_kind(field) if field else None) or kind
        elif get_origin(annotation) in (list, tuple) and isinstance(part, int):
            parent, args = None, get_args(annotation)
            annotation = args[0] if args else None
        else:
            parent, annotation = None, None
    kind = _unwrap(annotation)[2] or kind
    return path, parent, kind


def _unwrap(annotation: Any) -> tuple[Any, str | None, str | None]:
    """Strip Optional and Annotated; return (bare annotation, discriminator, component kind)."""
    discriminator: str | None = None
    kind: str | None = None
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation, *metadata = get_args(annotation)
            for item in metadata:
                if isinstance(item, FieldInfo):
                    discriminator = discriminator or item.discriminator  # type: ignore[assignment]
                    kind = kind or _field_kind(item)
        elif origin in (Union, types.UnionType) and type(None) in get_args(annotation):
            rest = [arg for arg in get_args(annotation) if arg is not type(None)]
            annotation = rest[0] if len(rest) == 1 else Union[tuple(rest)]  # noqa: UP007
        else:
            return annotation, discriminator, kind


def _field_kind(field: FieldInfo) -> str | None:
    extra = field.json_schema_extra
    return extra.get(KIND_KEY) if isinstance(extra, dict) else None  # type: ignore[return-value]


def _union_members(annotation: Any) -> dict[str, type[BaseModel]]:
    members: dict[str, type[BaseModel]] = {}
    for member in get_args(annotation) or (annotation,):
        if isinstance(member, type) and issubclass(member, BaseModel) and "type" in member.model_fields:
            for tag in get_args(member.model_fields["type"].annotation):
                members[str(tag)] = member
    return members
