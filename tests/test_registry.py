"""Registry: params derived from signatures, explicit params, duplicates, unknown names."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolkit.errors import DuplicateComponentError, PluginError, UnknownComponentError
from toolkit.registry import PluginInfo, Registry


def factory(in_channels: int, depth: Annotated[int, Field(ge=1, le=3)] = 2, name: str = "x") -> dict:
    """Builds a thing. Second line is not part of the description."""
    return {"in_channels": in_channels, "depth": depth, "name": name}


def test_params_model_is_derived_from_the_typed_signature() -> None:
    registry = Registry("head", injected=("in_channels",))
    entry = registry.register("thing", factory)
    assert set(entry.params.model_fields) == {"depth", "name"}
    assert entry.description == "Builds a thing. Second line is not part of the description."
    assert entry.params.model_validate({}).depth == 2
    with pytest.raises(ValidationError, match="less than or equal to 3"):
        entry.params.model_validate({"depth": 4})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        entry.params.model_validate({"dpth": 1})
    assert entry.build({"depth": 3}, in_channels=7) == {"in_channels": 7, "depth": 3, "name": "x"}


def test_explicit_params_model_is_used_as_given() -> None:
    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        depth: int = 1

    registry = Registry("backbone")
    entry = registry.register("thing", lambda depth: depth * 10, params=Params, description="ten times")
    assert entry.params is Params
    assert entry.description == "ten times"
    assert entry.build({"depth": 4}) == 40


def test_registrations_record_their_plugin() -> None:
    registry = Registry("backbone")
    plugin = PluginInfo("acme", "acme.plugin", "entry point", "acme-dist", "2.0")
    with registry.registering_as(plugin):
        registry.register("thing", factory)
    assert registry.get("thing").plugin == plugin
    assert registry.names() == ["thing"]
    registry.remove_plugin("acme")
    assert "thing" not in registry


def test_duplicate_name_names_both_plugins() -> None:
    registry = Registry("backbone")
    with registry.registering_as(PluginInfo("first", "first_mod", "-p")):
        registry.register("net", factory)
    with (
        registry.registering_as(PluginInfo("second", "second_mod", "-p")),
        pytest.raises(DuplicateComponentError) as info,
    ):
        registry.register("net", factory)
    message = str(info.value)
    assert "'first'" in message and "'second'" in message and "net" in message


def test_unknown_name_suggests_and_explains() -> None:
    registry = Registry("backbone")
    registry.register("resnet18", factory)
    registry.register("resnet50", factory)
    registry.failed_plugins.append("broken_plugin")
    with pytest.raises(UnknownComponentError) as info:
        registry.get("resnet81", path="model.backbone.type")
    message = str(info.value)
    assert message.startswith("model.backbone.type: unknown backbone 'resnet81'")
    assert "did you mean resnet18" in message
    assert "toolkit plugins" in message
    assert "broken_plugin" in message
    assert info.value.suggestions[0] == "resnet18"


@pytest.mark.parametrize(
    ("name", "target", "message"),
    [
        ("bad name", factory, "use ASCII letters"),
        ("r\u0435snet18", factory, "use ASCII letters"),  # a Cyrillic ie: prints like resnet18
        ("ok", 42, "not callable"),
    ],
)
def test_invalid_registrations_are_plugin_errors(name: str, target: object, message: str) -> None:
    with pytest.raises(PluginError, match=message):
        Registry("backbone").register(name, target)  # type: ignore[arg-type]


def test_untyped_parameter_is_a_plugin_error() -> None:
    def untyped(depth=3):  # type: ignore[no-untyped-def]
        return depth

    with pytest.raises(PluginError, match=r"'depth' .* has no type hint"):
        Registry("backbone").register("untyped", untyped)


def test_params_may_not_declare_injected_arguments() -> None:
    class Params(BaseModel):
        num_classes: int = 3

    with pytest.raises(PluginError, match="num_classes"):
        Registry("head", injected=("num_classes",)).register("h", factory, params=Params)


def test_return_annotation_is_not_evaluated() -> None:
    namespace: dict[str, object] = {}
    exec(  # a factory whose return type names a module imported only inside it
        "from __future__ import annotations\n"
        "def lazy(width: int = 4) -> torch.nn.Module:\n    return width\n",
        namespace,
    )
    entry = Registry("backbone").register("lazy", namespace["lazy"])  # type: ignore[arg-type]
    assert list(entry.params.model_fields) == ["width"]


def test_a_closure_factory_registers_with_its_typed_parameters() -> None:
    """Factories made by a function (closures over its variables) are as good as module-level ones."""

    def make(scale: int):  # type: ignore[no-untyped-def]
        def scaled(width: Annotated[int, Field(ge=1)] = 2) -> int:
            return width * scale

        return scaled

    entry = Registry("backbone").register("scaled", make(3))
    assert list(entry.params.model_fields) == ["width"]
    assert entry.build({"width": 5}) == 15
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        entry.params.model_validate({"width": 0})
