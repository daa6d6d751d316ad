"""Shared fixtures: run the CLI in a subprocess, plugin fixture modules, fake installed distributions."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from toolkit.plugins import PluginManager

REPO = Path(__file__).resolve().parents[1]
FIXTURE_PLUGINS = Path(__file__).resolve().parent / "plugin_fixtures"

#: The longest test files, run first: `make test` hands whole files to pytest-xdist workers
#: (`--dist loadfile`) in collection order, and a long file started last would finish alone.
SCHEDULED_FIRST = (
    "test_demo.py",
    "test_hostile_runs.py",
    "test_export.py",
    "test_attack_cli.py",
    "test_distributed.py",
    "test_data_cli.py",
    "test_hardening_round2.py",
    "test_hostile_predict_export_attack.py",
    "test_real_data.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the files of SCHEDULED_FIRST to the front (a stable sort: the rest keep their order)."""
    rank = {name: position for position, name in enumerate(SCHEDULED_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    pythonpath: Sequence[Path] = (),
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m toolkit ARGS` in a fresh process and capture its output."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TOOLKIT_")}
    environment.update(env or {})
    paths = [str(p) for p in pythonpath]
    if environment.get("PYTHONPATH"):
        paths.append(environment["PYTHONPATH"])
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    return subprocess.run(
        [sys.executable, "-m", "toolkit", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd or REPO,
        timeout=timeout,
    )


def run_cli_here(*args: str) -> subprocess.CompletedProcess[str]:
    """`toolkit ARGS` through `toolkit.cli.main` in this process (no torch import to pay again), with
    its exit code and captured output as `run_cli` gives them."""
    import contextlib
    import io

    from toolkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["toolkit", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`cli(*args, env=..., pythonpath=[...])` runs the toolkit CLI with the fixture plugins importable."""

    def run(*args: str, pythonpath: Sequence[Path] = (), **kwargs):  # type: ignore[no-untyped-def]
        return run_cli(*args, pythonpath=[FIXTURE_PLUGINS, *pythonpath], **kwargs)

    return run


def write_distribution(site: Path, name: str, entry_points: dict[str, str], version: str = "1.0") -> Path:
    """Write a minimal installed distribution (dist-info) declaring `toolkit` entry points."""
    dist_info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "\n".join(f"{ep} = {target}" for ep, target in entry_points.items())
    (dist_info / "entry_points.txt").write_text(f"[toolkit]\n{lines}\n")
    return site


@pytest.fixture
def fixture_plugins_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Make tests/plugin_fixtures importable in this process."""
    monkeypatch.syspath_prepend(str(FIXTURE_PLUGINS))
    yield FIXTURE_PLUGINS
    for name in list(sys.modules):
        if name.startswith("fixture_"):
            del sys.modules[name]


@pytest.fixture(autouse=True)
def _no_toolkit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("TOOLKIT_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="module")
def manager() -> PluginManager:
    """A plugin manager of the installed plugins (a module may define its own)."""
    return PluginManager()


@pytest.fixture(scope="module")
def detector(manager: PluginManager, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny detector's files (checkpoints, ONNX export, COCO data): see tests/detector_files.py."""
    from detector_files import build_detector_files

    return build_detector_files(tmp_path_factory.mktemp("detector"), manager)
