"""The example third-party plugin (examples/toolkit-mobilenet): installed through its entry point into a
fresh child venv, and loaded without installing through -p, a spec's `plugins:` and TOOLKIT_PLUGINS.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from childvenv import clean_env, make_child_venv, pip_install

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "toolkit-mobilenet"
CONFIG = EXAMPLE / "configs" / "centernet_mobilenet.yaml"
UNKNOWN = "unknown backbone 'mobilenet_v3_small'"


def _normalize(name: str | None) -> str:
    return (name or "").lower().replace("_", "-").replace(".", "-")


def _run(python: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python ARGS` with a clean environment (no PYTHONPATH or TOOLKIT_* unless given)."""
    return subprocess.run(
        [str(python), *args], capture_output=True, text=True, cwd=cwd, env=clean_env(**env), timeout=300
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _listing(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return json.loads(_ok(result))


def _component(listing: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    found = [c for c in listing["components"][kind] if c["name"] == name]
    assert found, f"{kind} {name!r} not listed: {[c['name'] for c in listing['components'][kind]]}"
    return found[0]


def _plugin(listing: dict[str, Any], name: str) -> dict[str, Any]:
    found = [p for p in listing["plugins"] if p["name"] == name]
    assert found, f"plugin {name!r} not listed: {[p['name'] for p in listing['plugins']]}"
    return found[0]


def _spec_with_plugins(directory: Path) -> Path:
    """The example config with a top-level `plugins: [toolkit_mobilenet]`."""
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    path = directory / "with_plugins.yaml"
    path.write_text(yaml.safe_dump({"plugins": ["toolkit_mobilenet"], **data}), encoding="utf-8")
    return path


# -- installed into a child venv (entry point) ------------------------------------------------------
@pytest.fixture(scope="module")
def child(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A child venv that inherits this one (editable toolkit, torch) with toolkit-mobilenet installed."""
    root = tmp_path_factory.mktemp("child")
    source = root / "toolkit-mobilenet"  # build from a copy: pip writes build/ and *.egg-info in-tree
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    python = make_child_venv(root / "venv", inherit_editable=True)
    pip_install(python, source)
    return python


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory outside the repository, so nothing is imported from the checkout by accident."""
    return tmp_path


def test_installed_plugin_is_listed_with_its_distribution(child: Path, workdir: Path) -> None:
    listing = _listing(_run(child, "-m", "toolkit", "plugins", "--json", cwd=workdir))
    backbone = _component(listing, "backbone", "mobilenet_v3_small")
    assert backbone["plugin"] == "mobilenet"
    assert _normalize(backbone["distribution"]) == "toolkit-mobilenet"
    assert backbone["version"] == "0.1.0"
    pretrained = backbone["params"]["properties"]["pretrained"]["anyOf"]  # the plugin's values, or a file
    assert pretrained[0]["enum"] == ["none", "imagenet"] and "weights file" in pretrained[1]["description"]
    plugin = _plugin(listing, "mobilenet")
    assert (plugin["source"], plugin["module"], plugin["status"]) == (
        "entry point",
        "toolkit_mobilenet",
        "loaded",
    )
    assert _component(listing, "backbone", "resnet18")["plugin"] == "toolkit.resnet"
    assert _normalize(_component(listing, "head", "centernet")["distribution"]) == "toolkit"
    assert not [p for p in listing["plugins"] if p["status"] != "loaded"]


def test_installed_plugin_builds_the_example_config(child: Path, workdir: Path) -> None:
    out = _ok(_run(child, "-m", "toolkit", "build", str(CONFIG), cwd=workdir))
    assert "detection model, 3 classes" in out
    assert "outputs at 1x3x256x256" in out
    backbone_row = next(line for line in out.splitlines() if line.startswith("backbone"))
    assert "mobilenet_v3_small" in backbone_row
    assert "features [1, 576, 8, 8]" in backbone_row
    head_row = next(line for line in out.splitlines() if line.startswith("head"))
    assert "heatmap [1, 3, 64, 64], size [1, 2, 64, 64], offset [1, 2, 64, 64]" in head_row


def test_installed_plugin_through_the_python_api(child: Path, workdir: Path) -> None:
    snippet = textwrap.dedent(
        """
        import json, torch, toolkit
        spec = {
            "model": {
                "backbone": {"type": "mobilenet_v3_small"},
                "head": {"type": "centernet", "neck_channels": [64, 32, 16], "max_detections": 20},
                "input_size": [128, 192],
                "class_names": ["a", "b", "c"],
            }
        }
        model = toolkit.build_model(spec).eval()
        torch.manual_seed(0)
        with torch.no_grad():
            outputs = model(torch.rand(2, 3, 128, 192))
            decoded = model.decode(outputs)
        entry = toolkit.get_plugin_manager().registry("backbone").get("mobilenet_v3_small")
        half = entry.build({"width_mult": 0.5}).eval()
        with torch.no_grad():
            half_features = half(torch.rand(1, 3, 64, 96))
        print(json.dumps({
            "half": [half.out_channels, list(half_features.shape)],
            "backbone": type(model.backbone).__module__,
            "out_channels": model.backbone.out_channels,
            "stride": model.backbone.stride,
            "outputs": {k: list(v.shape) for k, v in outputs.items()},
            "decoded": {k: list(v.shape) for k, v in decoded.items()},
            "labels_max": int(decoded["labels"].max()),
        }))
        """
    )
    result = json.loads(_ok(_run(child, "-c", snippet, cwd=workdir)).strip().splitlines()[-1])
    assert result["backbone"] == "toolkit_mobilenet.backbone"
    assert (result["out_channels"], result["stride"]) == (576, 32)
    assert result["outputs"] == {"heatmap": [2, 3, 32, 48], "size": [2, 2, 32, 48], "offset": [2, 2, 32, 48]}
    assert result["decoded"] == {"boxes": [2, 20, 4], "scores": [2, 20], "labels": [2, 20]}
    assert result["labels_max"] < 3
    assert result["half"] == [288, [1, 288, 2, 3]]  # out_channels is read from the module


def test_installed_plugin_disabled_with_no_name(child: Path, workdir: Path) -> None:
    result = _run(child, "-m", "toolkit", "-p", "no:mobilenet", "validate", str(CONFIG), cwd=workdir)
    assert result.returncode == 2, result.stderr
    assert UNKNOWN in result.stderr
    assert "Traceback" not in result.stderr


def test_installed_plugin_named_in_spec_is_not_loaded_twice(child: Path, workdir: Path) -> None:
    out = _ok(_run(child, "-m", "toolkit", "validate", str(_spec_with_plugins(workdir)), cwd=workdir))
    assert "valid (mobilenet_v3_small + centernet, 3 classes, input 256x256, multiple of 32)" in out


# -- not installed: the package folder on PYTHONPATH of this venv ------------------------------------
def _main(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m toolkit ARGS` in this venv with the example package importable but not installed."""
    return _run(Path(sys.executable), "-m", "toolkit", *args, cwd=cwd, PYTHONPATH=str(EXAMPLE), **env)


def test_dash_p_loads_the_module(workdir: Path) -> None:
    listing = _listing(_main("-p", "toolkit_mobilenet", "plugins", "--json", cwd=workdir))
    backbone = _component(listing, "backbone", "mobilenet_v3_small")
    assert backbone["plugin"] == "toolkit_mobilenet"
    assert (backbone["distribution"], backbone["version"]) == (None, None)
    assert _plugin(listing, "toolkit_mobilenet")["source"] == "-p"
    assert "resnet18" in [c["name"] for c in listing["components"]["backbone"]]


def test_validate_fails_when_the_plugin_is_not_loaded(workdir: Path) -> None:
    result = _main("validate", str(CONFIG), cwd=workdir)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"model.backbone.type: {UNKNOWN}" in result.stderr
    assert "resnet18" in result.stderr  # the available backbones are named
    assert "Traceback" not in result.stderr


def test_validate_with_dash_p(workdir: Path) -> None:
    out = _ok(_main("-p", "toolkit_mobilenet", "validate", str(CONFIG), cwd=workdir))
    assert "valid (mobilenet_v3_small + centernet, 3 classes, input 256x256, multiple of 32)" in out


def test_validate_with_plugins_in_the_spec(workdir: Path) -> None:
    out = _ok(_main("validate", str(_spec_with_plugins(workdir)), cwd=workdir))
    assert "valid (mobilenet_v3_small + centernet" in out


def test_validate_with_env_var(workdir: Path) -> None:
    out = _ok(_main("validate", str(CONFIG), cwd=workdir, TOOLKIT_PLUGINS="toolkit_mobilenet"))
    assert "valid (mobilenet_v3_small + centernet" in out
    listing = _listing(_main("plugins", "--json", cwd=workdir, TOOLKIT_PLUGINS="toolkit_mobilenet"))
    assert _plugin(listing, "toolkit_mobilenet")["source"] == "TOOLKIT_PLUGINS"


def test_params_from_type_hints_are_validated(workdir: Path) -> None:
    result = _main(
        "-p",
        "toolkit_mobilenet",
        "validate",
        str(CONFIG),
        "model.backbone.width_mult=3",
        "model.backbone.pretrained=coco",
        cwd=workdir,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "2 problems" in result.stderr
    assert "model.backbone.width_mult: Input should be less than or equal to 2" in result.stderr
    assert (
        "model.backbone.pretrained: 'coco' is not a file; use 'none' or 'imagenet' or the path of a local"
        in result.stderr
    )


def test_schema_includes_the_plugin(workdir: Path) -> None:
    schema = json.loads(_ok(_main("-p", "toolkit_mobilenet", "schema", cwd=workdir)))
    assert "mobilenet_v3_small" in json.dumps(schema)


def test_loading_and_validating_does_not_import_torch(workdir: Path) -> None:
    snippet = textwrap.dedent(
        f"""
        import sys
        from toolkit.cli import main
        assert main(["-p", "toolkit_mobilenet", "validate", {str(CONFIG)!r}]) == 0
        print("torch" in sys.modules, "torchvision" in sys.modules)
        """
    )
    result = _run(Path(sys.executable), "-c", snippet, cwd=workdir, PYTHONPATH=str(EXAMPLE))
    assert _ok(result).strip().splitlines()[-1] == "False False"
