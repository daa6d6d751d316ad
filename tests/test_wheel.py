"""A non-editable wheel, installed into a fresh venv without the source tree, finds its plugins."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from childvenv import clean_env, make_child_venv, pip_install
from conftest import REPO

pytestmark = pytest.mark.slow


def test_wheel_installs_and_lists_plugins(tmp_path: Path) -> None:
    source = tmp_path / "src"  # pip writes build/ and *.egg-info next to the sources
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "runs"),
    )
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "-w", str(wheels), str(source)],
        capture_output=True, text=True, env=clean_env(), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (wheel,) = wheels.glob("toolkit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "toolkit_plugins/backbones/resnet.py" in names
    assert "toolkit/py.typed" in names
    assert not any(name.startswith(("plugins/", "tests/")) for name in names)

    python = make_child_venv(tmp_path / "venv", inherit_editable=False)
    pip_install(python, wheel)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import toolkit, toolkit_plugins as p; print(toolkit.__file__, p.__file__)"],
        capture_output=True, text=True, cwd=outside, env=clean_env(), check=True,
    )  # fmt: skip
    for line in where.stdout.split():
        assert Path(line).is_relative_to(tmp_path / "venv"), line
    listing = subprocess.run(
        [str(python), "-m", "toolkit", "plugins", "--json"],
        capture_output=True, text=True, cwd=outside, env=clean_env(), timeout=300,
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    backbones = {c["name"]: c["plugin"] for c in data["components"]["backbone"]}
    heads = {c["name"]: c["plugin"] for c in data["components"]["head"]}
    assert backbones["resnet18"] == "toolkit.resnet" and "resnet50" in backbones
    assert {"centernet", "classification"} <= set(heads)
    assert all(p["status"] == "loaded" and p["distribution"] == "toolkit" for p in data["plugins"])
    script = python.parent / "toolkit"
    validate = subprocess.run(
        [str(script), "validate", str(REPO / "configs/centernet_resnet18.yaml")],
        capture_output=True, text=True, cwd=outside, env=clean_env(), timeout=300,
    )  # fmt: skip
    assert validate.returncode == 0, validate.stderr
