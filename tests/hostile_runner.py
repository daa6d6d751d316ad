"""Run many `toolkit` command lines through the real `toolkit.cli.main` in one subprocess, watched.

Hostile-input suites have dozens of cases; one process per case would pay the torch import each
time. This driver (`python tests/hostile_runner.py CASES.json`) runs each case's argv through
`toolkit.cli.main` with its own captured stdout and stderr, and an audit hook (PEP 578) records
every file opened and every folder listed under the case's forbidden places: a case passes only
if nothing there was touched. An uncaught exception is printed as Python would (a "Traceback").
The results (JSON, one per case) go to the real stdout.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

WATCHED_EVENTS = frozenset(
    {"open", "os.scandir", "os.listdir", "os.mkdir", "os.remove", "os.rename", "os.rmdir", "shutil.rmtree"}
)


@dataclass
class Case:
    """One command line and the places it must not touch."""

    argv: list[str]
    forbidden: list[str] = field(default_factory=list)


@dataclass
class Result:
    """What one command line did: exit code, output and what it touched of the forbidden places."""

    code: int
    stdout: str
    stderr: str
    touched: list[str]


def run_cases(
    cases: dict[str, Case], workdir: Path, *, memory_limit: int | None = None, timeout: float = 600
) -> dict[str, Result]:
    """Run every case in one fresh interpreter (optionally under an address-space limit, bytes)."""
    spec = workdir / "cases.json"
    spec.write_text(json.dumps({name: asdict(case) for name, case in cases.items()}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLKIT_")}
    command = [sys.executable, str(Path(__file__).resolve()), str(spec)]
    if memory_limit:
        command.append(str(memory_limit))
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=workdir, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"the driver failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return {name: Result(**result) for name, result in json.loads(done.stdout).items()}


def _drive(cases_file: str, memory_limit: int | None) -> None:
    if memory_limit:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    cases: dict[str, Any] = json.loads(Path(cases_file).read_text())
    forbidden: list[str] = []
    touched: list[str] = []

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not forbidden or event not in WATCHED_EVENTS or not args:
            return
        target = args[0]
        if not isinstance(target, (str, bytes, os.PathLike)):
            return
        real = os.path.realpath(os.fsdecode(target))
        if any(real == place or real.startswith(place + os.sep) for place in forbidden):
            touched.append(f"{event} {real}")

    sys.addaudithook(hook)
    from toolkit.cli import main

    results = {}
    for name, case in cases.items():
        out, err = io.StringIO(), io.StringIO()
        forbidden[:] = [os.path.realpath(place) for place in case["forbidden"]]
        touched.clear()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(case["argv"])
            except SystemExit as exc:  # argparse
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # what the interpreter would print and exit with
                traceback.print_exc()
                code = 1
        forbidden.clear()
        results[name] = {
            "code": code,
            "stdout": out.getvalue(),
            "stderr": err.getvalue(),
            "touched": list(touched),
        }
    sys.stdout.write(json.dumps(results))


def error_lines(stderr: str) -> list[str]:
    """The `toolkit: error:` lines of stderr."""
    return [line for line in stderr.splitlines() if line.startswith("toolkit: error:")]


def assert_refused(result: Result, fragments: Sequence[str], *, code: int = 2) -> None:
    """Exit `code`, one error line (a spec's issues may follow it, indented) holding every
    fragment, no traceback, nothing forbidden touched."""
    shown = f"exit {result.code}\nstdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-4000:]}"
    assert result.code == code, shown
    assert "Traceback" not in result.stderr, shown
    errors = error_lines(result.stderr)
    assert len(errors) == 1, shown
    lines = result.stderr.strip().splitlines()
    after = lines[lines.index(errors[0]) + 1 :]
    assert all(line.startswith("  ") for line in after), shown
    text = "\n".join([errors[0], *after])
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in the message\n{shown}"
    assert result.touched == [], f"touched forbidden places: {result.touched}\n{shown}"


if __name__ == "__main__":
    _drive(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)
