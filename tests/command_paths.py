"""Which core modules each command's path visits, and how often: `toolkit eval CKPT`, `predict`,
`export` and `attack`, traced in this process (`sys.setprofile`) on the tiny detector of the tests.

The tracer records every call from one core module (`toolkit.*`) into another. Calls made by a
plugin (`toolkit_plugins.*`: the task, the head, ...) and what they call are not counted. A path
goes straight down when no module calls back into a module that called it, directly or through
others: the call graph among the core modules has no cycle. A loop that calls a lower module once
per batch is one edge, not a call back.

    python tests/command_paths.py [--markdown]

Prints JSON: per command, the modules in order of first entry, the calls between them, and the
calls back (the edges on a cycle). `--markdown` prints the table docs/architecture.md shows.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

CORE = "toolkit"
PLUGINS = "toolkit_plugins"


def _module(frame: FrameType) -> str:
    return str(frame.f_globals.get("__name__", ""))


def _is_core(module: str) -> bool:
    return module == CORE or module.startswith(CORE + ".")


def _is_plugin(module: str) -> bool:
    return module.startswith(PLUGINS) or module.startswith("fixture_")


class PathTracer:
    """Records the calls between core modules (see the module docstring) while it is active."""

    def __init__(self) -> None:
        self.edges: Counter[tuple[str, str]] = Counter()
        self.order: list[str] = []

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        module = _module(frame)
        if not _is_core(module) or frame.f_code.co_name == "<module>":
            return  # not the core, or a module being imported
        caller = frame.f_back
        while caller is not None:
            name = _module(caller)
            if _is_plugin(name):
                return  # a plugin's call into the core: not the command's path
            if _is_core(name):
                break
            caller = caller.f_back
        source = _module(caller) if caller is not None else "<caller>"
        if source == module:
            return  # within the module
        self.edges[(source, module)] += 1
        if module not in self.order:
            self.order.append(module)

    def __enter__(self) -> PathTracer:
        sys.setprofile(self)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)


def trace(argv: list[str]) -> dict[str, Any]:
    """Run `toolkit ARGV` in process under the tracer; the modules and their entries."""
    from toolkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    with PathTracer() as tracer, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    if code != 0:
        raise SystemExit(f"toolkit {' '.join(argv)} failed ({code}): {err.getvalue()[-500:]}")
    edges = {edge for edge in tracer.edges if edge[0] != "<caller>"}
    return {
        "modules": tracer.order,
        "calls": [f"{a} -> {b}" for a, b in sorted(edges)],
        "calls_back": [f"{a} -> {b}" for a, b in calls_back(edges)],
    }


def calls_back(edges: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """The calls (caller, callee) on a cycle: the callee calls the caller, directly or through others."""
    return sorted(edge for edge in edges if edge[0] in _reachable(edge[1], edges))


def _reachable(start: str, edges: set[tuple[str, str]]) -> set[str]:
    """The modules `start` calls, directly or through others."""
    seen: set[str] = set()
    stack = [start]
    while stack:
        node = stack.pop()
        for source, target in edges:
            if source == node and target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def trace_commands(root: Path) -> dict[str, dict[str, Any]]:
    """The four commands that take a checkpoint, traced on the tests' tiny detector built in `root`."""
    from detector_files import build_detector_files

    from toolkit.plugins import PluginManager

    files = build_detector_files(root / "detector", PluginManager())
    checkpoint, images = str(files["checkpoint"]), str(files["images"])
    commands = {
        "eval CKPT": ["eval", checkpoint, "--no-progress"],
        "predict CKPT": ["predict", checkpoint, images, "--out", str(root / "predicted")],
        "export CKPT": ["export", checkpoint, "-o", str(root / "model.onnx")],
        "attack CKPT": [
            "attack", checkpoint, "attack.method.type=fgsm", "attack.max_images=2",
            "--out", str(root / "attack"), "--no-progress",
        ],
    }  # fmt: skip
    return {name: trace(argv) for name, argv in commands.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the docs table instead of JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        report = trace_commands(Path(folder))
    if not args.markdown:
        print(json.dumps(report, indent=2))
        return
    print("| command | core modules, in order of first entry | calls back |")
    print("|---|---|---|")
    for name, found in report.items():
        modules = " → ".join(f"`{m.removeprefix('toolkit.')}`" for m in found["modules"])
        back = ", ".join(f"`{edge.replace('toolkit.', '')}`" for edge in found["calls_back"]) or "none"
        print(f"| `toolkit {name}` | {modules} | {back} |")


if __name__ == "__main__":
    main()
