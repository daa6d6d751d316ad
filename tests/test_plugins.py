"""Plugin discovery, failure isolation, duplicates, misspelled hooks, -p / env / spec sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_distribution

from toolkit.errors import DuplicateComponentError, PluginError, UnknownComponentError
from toolkit.plugins import PluginManager, PluginWarning
from toolkit.spec import load_spec

BUILTINS = {
    "backbone": {"resnet18", "resnet50"},
    "head": {"centernet", "classification"},
}

CENTERNET_SPEC = {
    "model": {
        "backbone": {"type": "tiny"},
        "head": {"type": "centernet"},
        "input_size": 64,
        "class_names": ["a", "b"],
    }
}


def test_builtins_come_through_entry_points() -> None:
    manager = PluginManager()
    for kind, names in BUILTINS.items():
        assert names <= set(manager.registry(kind).names())
    entry = manager.registry("backbone").get("resnet18")
    assert entry.plugin.source == "entry point"
    assert entry.plugin.name == "toolkit.resnet"
    assert entry.plugin.distribution == "toolkit"
    assert manager.failed == []


def test_broken_entry_point_is_reported_and_the_rest_works(
    tmp_path: Path, fixture_plugins_on_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = write_distribution(tmp_path / "site", "acme-broken", {"acme": "fixture_broken_import"}, "3.1")
    monkeypatch.syspath_prepend(str(site))
    with pytest.warns(PluginWarning) as caught:
        manager = PluginManager()
    message = str(caught[0].message)
    assert "'acme'" in message and "acme-broken 3.1" in message
    assert "ImportError" in message and "fixture_missing_dependency" in message
    assert [f.info.name for f in manager.failed] == ["acme"]
    assert {"resnet18", "resnet50"} <= set(manager.registry("backbone").names())
    with pytest.raises(UnknownComponentError, match="plugins that failed to load: acme"):
        manager.registry("backbone").get("acme_net")


def test_broken_plugin_in_the_cli(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    site = write_distribution(tmp_path / "site", "acme-broken", {"acme": "fixture_broken_import"})
    listing = cli("plugins", "--json", pythonpath=[site])
    assert listing.returncode == 0, listing.stderr
    failed = [p for p in json.loads(listing.stdout)["plugins"] if p["status"] != "loaded"]
    assert [(p["name"], p["distribution"], p["status"]) for p in failed] == [
        ("acme", "acme-broken", "failed to import")
    ]
    assert "toolkit: warning:" in listing.stderr and "acme" in listing.stderr
    validate = cli("validate", "configs/centernet_resnet18.yaml", pythonpath=[site])
    assert validate.returncode == 0, validate.stderr
    strict = cli("plugins", pythonpath=[site], env={"TOOLKIT_STRICT_PLUGINS": "1"})
    assert strict.returncode == 2
    assert "acme" in strict.stderr and "TOOLKIT_STRICT_PLUGINS" in strict.stderr
    assert "Traceback" not in strict.stderr


def test_duplicate_component_names_both_plugins(fixture_plugins_on_path: Path) -> None:
    with pytest.raises(DuplicateComponentError) as info:
        PluginManager(modules=["fixture_duplicate_resnet"])
    message = str(info.value)
    assert "'toolkit.resnet'" in message and "'fixture_duplicate_resnet'" in message
    assert "resnet18" in message


def test_duplicate_in_the_cli_exits_2(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("-p", "fixture_duplicate_resnet", "plugins")
    assert result.returncode == 2
    assert "registered twice" in result.stderr and "fixture_duplicate_resnet" in result.stderr
    assert "Traceback" not in result.stderr


def test_misspelled_hook_is_an_error_naming_the_plugin(fixture_plugins_on_path: Path) -> None:
    with pytest.raises(PluginError) as info:
        PluginManager(modules=["fixture_misspelled_hook"])
    message = str(info.value)
    assert "fixture_misspelled_hook" in message
    assert "toolkit_register_backbone'" in message
    assert "did you mean toolkit_register_backbones" in message


def test_failing_registration_is_rolled_back(fixture_plugins_on_path: Path) -> None:
    with pytest.warns(PluginWarning, match="registration crashed on purpose"):
        manager = PluginManager(modules=["fixture_failing_register"])
    assert "half_done" not in manager.registry("backbone")
    assert manager.failed_names() == ["fixture_failing_register"]
    assert manager.failed[0].stage == "register"


def test_unmarked_hook_function_warns(fixture_plugins_on_path: Path) -> None:
    with pytest.warns(PluginWarning, match="without @toolkit.hookimpl"):
        manager = PluginManager(modules=["fixture_unmarked_hook"])
    assert "unmarked" not in manager.registry("backbone")


def test_disable_with_no_prefix(fixture_plugins_on_path: Path) -> None:
    manager = PluginManager(modules=["no:toolkit.resnet", "fixture_tiny"])
    assert "resnet18" not in manager.registry("backbone")
    assert "tiny" in manager.registry("backbone")
    with pytest.raises(Exception, match="unknown backbone 'resnet18'"):
        load_spec(
            {**CENTERNET_SPEC, "model": {**CENTERNET_SPEC["model"], "backbone": {"type": "resnet18"}}},
            plugins=manager,
        )


def test_environment_variable_loads_and_disables(fixture_plugins_on_path: Path) -> None:
    manager = PluginManager(environ={"TOOLKIT_PLUGINS": "fixture_tiny, no:toolkit.centernet"})
    assert manager.registry("backbone").get("tiny").plugin.source == "TOOLKIT_PLUGINS"
    assert "centernet" not in manager.registry("head")


def test_spec_plugins_list_loads_modules(fixture_plugins_on_path: Path) -> None:
    manager = PluginManager()
    assert "tiny" not in manager.registry("backbone")
    spec = load_spec({"plugins": ["fixture_tiny"], **CENTERNET_SPEC}, plugins=manager)
    assert spec.model.backbone.type == "tiny"
    assert manager.registry("backbone").get("tiny").plugin.source == "spec"


def test_failing_explicit_module_is_isolated_too(fixture_plugins_on_path: Path) -> None:
    with pytest.warns(PluginWarning, match="no_such_plugin_module"):
        manager = PluginManager(modules=["no_such_plugin_module"])
    assert manager.failed[0].info.source == "-p"
    assert "resnet18" in manager.registry("backbone")


def test_contract_violation_names_the_plugin(fixture_plugins_on_path: Path) -> None:
    from toolkit.build import build_model

    manager = PluginManager(modules=["fixture_tiny"])
    spec = {**CENTERNET_SPEC, "model": {**CENTERNET_SPEC["model"], "backbone": {"type": "not_a_module"}}}
    with pytest.raises(PluginError, match=r"not_a_module.*fixture_tiny.*breaks the backbone contract"):
        build_model(spec, plugins=manager)


def test_plugin_options_before_and_after_the_command_add_up(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("-p", "fixture_tiny", "plugins", "--json", "-p", "fixture_failing_register")
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p["status"] for p in json.loads(result.stdout)["plugins"]}
    assert plugins["fixture_tiny"] == "loaded"
    assert plugins["fixture_failing_register"] == "failed to register"


def test_spec_can_disable_a_loaded_plugin(fixture_plugins_on_path: Path) -> None:
    manager = PluginManager(modules=["fixture_tiny"])
    assert "centernet" in manager.registry("head")
    with pytest.raises(Exception, match=r"model.head.type: unknown head 'centernet'"):
        load_spec({"plugins": ["no:toolkit.centernet"], **CENTERNET_SPEC}, plugins=manager)
    assert manager.find_plugin("toolkit.centernet") is None


def test_injected_argument_in_a_spec_explains_where_it_comes_from() -> None:
    spec = {**CENTERNET_SPEC, "model": {**CENTERNET_SPEC["model"], "backbone": {"type": "resnet18"}}}
    spec["model"]["head"] = {"type": "centernet", "in_channels": 3}
    with pytest.raises(Exception, match="in_channels is set from the backbone's out_channels"):
        load_spec(spec, plugins=PluginManager())


def test_trace_env_var_traces_every_hook_call(cli) -> None:  # type: ignore[no-untyped-def]
    traced = cli("plugins", env={"TOOLKIT_TRACE_PLUGINS": "1"})
    assert traced.returncode == 0, traced.stderr
    for hook in ("toolkit_register_tasks", "toolkit_register_backbones", "toolkit_register_datasets"):
        assert f"{hook} [hook]" in traced.stderr, hook
    assert "registry: Registry('backbone'" in traced.stderr
    assert "[hook]" not in cli("plugins").stderr


def test_blocking_goes_through_pluggy() -> None:
    manager = PluginManager(blocked=["toolkit.resnet"])
    assert manager.blocked == {"toolkit.resnet"}
    assert "resnet18" not in manager.registry("backbone")
    manager.add_modules(["no:toolkit.centernet"], source="spec")  # a spec's `no:NAME` unloads it
    assert "centernet" not in manager.registry("head") and "toolkit.centernet" in manager.blocked
