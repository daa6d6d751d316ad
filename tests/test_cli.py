"""CLI end to end: help without torch, plugin listing, schema, validate, build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURE_PLUGINS, REPO, run_cli

NO_TORCH = """
import sys
from toolkit.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit_:
    code = exit_.code
assert code == 0, code
heavy = sorted(m for m in ("torch", "torchvision", "numpy") if m in sys.modules)
assert not heavy, heavy
"""


def test_help_and_light_commands_do_not_import_torch() -> None:
    for args in (["--help"], ["plugins"], ["schema"], ["validate", "configs/centernet_resnet50.yaml"]):
        result = subprocess.run(
            [sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, cwd=REPO
        )
        assert result.returncode == 0, (args, result.stderr)


def test_a_reader_that_leaves_the_pipe_ends_the_command_quietly() -> None:
    """`toolkit plugins | head -1`: the closed pipe is exit 141 (128 + SIGPIPE) and no error text."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        process = subprocess.run(
            [sys.executable, "-m", "toolkit", "plugins"], stdout=writer, stderr=subprocess.PIPE, text=True
        )
    finally:
        os.close(writer)
    assert process.returncode == 141, process.stderr
    assert process.stderr == ""


def test_a_broken_pipe_that_is_not_stdout_is_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A BrokenPipeError from another pipe (a worker's, say) while stdout is fine is an error, exit 2."""
    from toolkit import cli

    def broken(_: object) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_handler", lambda reference: broken)
    assert cli.main(["plugins"]) == 2
    assert "toolkit: error: Broken pipe" in capsys.readouterr().err


def test_version_and_missing_command() -> None:
    assert run_cli("--version").stdout.strip() == "toolkit 0.1.0"
    result = run_cli()
    assert result.returncode == 2
    assert "required: COMMAND" in result.stderr


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("toolkit")
    result = subprocess.run([str(script), "plugins"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "toolkit.resnet" in result.stdout


def test_plugins_json_lists_builtins_with_their_plugin() -> None:
    result = run_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    found = {
        (kind, item["name"]): (item["plugin"], item["distribution"])
        for kind, items in listing["components"].items()
        for item in items
    }
    assert found[("backbone", "resnet18")] == ("toolkit.resnet", "toolkit")
    assert found[("backbone", "resnet50")] == ("toolkit.resnet", "toolkit")
    assert found[("head", "centernet")] == ("toolkit.centernet", "toolkit")
    assert found[("head", "classification")] == ("toolkit.classification", "toolkit")
    params = next(i for i in listing["components"]["backbone"] if i["name"] == "resnet18")["params"]
    assert params["properties"]["frozen_stages"]["maximum"] == 4
    assert all(p["status"] == "loaded" for p in listing["plugins"])


def test_plugins_table() -> None:
    result = run_cli("plugins")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["plugin", "source", "distribution", "status", "import", "(s)"]
    assert any(line.split()[:3] == ["head", "centernet", "toolkit.centernet"] for line in lines)


def test_schema_to_file(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    result = run_cli("schema", "-o", str(out))
    assert result.returncode == 0
    schema = json.loads(out.read_text())
    assert schema["$schema"].endswith("2020-12/schema")
    assert "Backbone_resnet50" in schema["$defs"]


def test_validate_prints_a_summary() -> None:
    result = run_cli("validate", "configs/centernet_resnet18.yaml", "model.input_size=[256, 320]")
    assert result.returncode == 0, result.stderr
    assert "valid (resnet18 + centernet, 8 classes, input 256x320, multiple of 32)" in result.stdout


def test_build_prints_parameters_and_shapes() -> None:
    result = run_cli("build", "configs/classifier_resnet18.yaml", "model.input_size=64")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}
    # resnet18 trunk: 11,176,512 parameters, all frozen (frozen_stages: 4)
    assert rows["backbone"][1:5] == ["resnet18", "11,176,512", "0", "11,176,512"]
    assert rows["head"][1:5] == ["classification", "1,026", "1,026", "0"]
    assert "features [1, 512, 2, 2]" in result.stdout
    assert "logits [1, 2]" in result.stdout

    detection = run_cli("build", "configs/centernet_resnet18.yaml", "model.input_size=[128, 96]")
    assert detection.returncode == 0, detection.stderr
    assert "heatmap [1, 8, 32, 24]" in detection.stdout
    assert "size [1, 2, 32, 24]" in detection.stdout
    assert "offset [1, 2, 32, 24]" in detection.stdout


def test_build_with_broken_weights_file_exits_2(tmp_path: Path) -> None:
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"not a checkpoint")
    result = run_cli(
        "build",
        "configs/centernet_resnet18.yaml",
        "model.input_size=64",
        f"model.backbone.pretrained={weights}",
    )
    assert result.returncode == 2
    assert str(weights) in result.stderr
    assert "Traceback" not in result.stderr


def test_build_with_skips_on_a_backbone_without_levels_exits_2() -> None:
    result = run_cli(
        "build",
        "configs/centernet_resnet18.yaml",
        "model.input_size=64",
        "plugins=[fixture_tiny]",
        "model.backbone={type: tiny}",
        "model.head.skips=true",
        pythonpath=[FIXTURE_PLUGINS],
    )
    assert result.returncode == 2, result.stderr
    assert "skips need a backbone that provides feature levels" in result.stderr
    assert "set skips: false" in result.stderr
    assert "Traceback" not in result.stderr


def test_build_with_skips_prints_the_levels_model() -> None:
    result = run_cli(
        "build", "configs/centernet_resnet18.yaml", "model.input_size=64", "model.head.skips=true"
    )
    assert result.returncode == 0, result.stderr
    assert "heatmap [1, 8, 16, 16]" in result.stdout


def test_validate_print_shows_the_merged_spec_as_yaml() -> None:
    import yaml

    result = run_cli("validate", "configs/centernet_resnet50.yaml", "--print", "model.input_size=[256, 320]")
    assert result.returncode == 0, result.stderr
    merged = yaml.safe_load(result.stdout)  # the summary is a YAML comment: stdout stays YAML
    assert "extends" not in merged
    assert merged["model"]["backbone"]["type"] == "resnet50"  # from the file
    assert merged["model"]["head"]["type"] == "centernet"  # from its base, centernet_resnet18.yaml
    assert merged["model"]["input_size"] == [256, 320]  # the override
    assert result.stdout.splitlines()[-1] == (
        "# configs/centernet_resnet50.yaml: valid "
        "(resnet50 + centernet, 8 classes, input 256x320, multiple of 32)"
    )
