"""Output places named on the command line, checked before any work: a folder where a file is
expected (or the reverse), a place that cannot be created or written. Light (no torch).

Each check raises `ToolkitError` naming the option and the path; nothing is left behind (a
folder or file created to probe the place is removed again).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from toolkit.errors import ToolkitError


def check_output_file(path: str | Path, option: str, *, example: str = "out") -> Path:
    """`path` can be written as a file: not a folder, its folder creatable and writable."""
    path = Path(path)
    if path.is_dir():
        raise ToolkitError(f"{option} {path} is a folder; name a file (e.g. {path / example})")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise ToolkitError(f"{option} {path}: the file is not writable")
        return path
    if not path.parent.exists():
        check_output_dir(path.parent, option, of=path)
        return path
    if not path.parent.is_dir():
        raise ToolkitError(f"{option} {path}: {path.parent} is a file, not a folder")
    try:  # probe: create the file and remove it again
        with open(path, "xb"):
            pass
    except OSError as exc:
        raise ToolkitError(f"{option} {path}: cannot write there ({exc.strerror or exc})") from None
    path.unlink(missing_ok=True)
    return path


def check_output_dir(path: str | Path, option: str, *, of: Path | None = None) -> Path:
    """`path` is a folder, or can be created as one (probed: created, then removed again)."""
    path = Path(path)
    named = of or path
    if path.exists():
        if not path.is_dir():
            raise ToolkitError(f"{option} {named}: {path} is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ToolkitError(f"{option} {named}: {path} is not writable")
        return path
    created: list[Path] = []
    missing = path
    while not missing.exists():
        created.append(missing)
        missing = missing.parent
    if not missing.is_dir():
        raise ToolkitError(f"{option} {named}: {missing} is a file, not a folder")
    try:
        for folder in reversed(created):
            folder.mkdir()
    except OSError as exc:
        raise ToolkitError(f"{option} {named}: cannot create {path} ({exc.strerror or exc})") from None
    finally:
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
    return path
