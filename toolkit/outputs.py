"""Output places named on the command line, checked before any work: a folder where a file is
expected (or the reverse), a place that cannot be created or written. Light (no torch).

Each check raises `ToolkitError` naming the option and the path; nothing is left behind (a
folder or file created to probe the place is removed again).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection
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


#: the list of files the toolkit wrote into a shared output folder (predict's --out): those it may
#: replace on the next run; every other file there is the user's and is never overwritten
MANIFEST = ".toolkit-outputs.json"


def written_before(folder: Path) -> set[str]:
    """The names the toolkit recorded as its own in `folder` (empty when it recorded none)."""
    import json

    try:
        names = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {name for name in names if isinstance(name, str)} if isinstance(names, list) else set()


def check_no_overwrite(folder: Path, names: list[str], option: str, *, inputs: Collection[Path] = ()) -> None:
    """Refuse (ToolkitError) when writing `names` into `folder` would replace an input (`inputs`, resolved
    paths) or any existing file the toolkit did not record as its own there (see `MANIFEST`)."""
    owned = written_before(folder)
    clashes = []
    for name in names:
        path = folder / name
        if not (path.exists() or path.is_symlink()):
            continue
        if path.resolve() in inputs or name not in owned or not path.is_file() or path.is_symlink():
            clashes.append(name)
    if clashes:
        shown = ", ".join(clashes[:3]) + (", ..." if len(clashes) > 3 else "")
        is_source = any(folder.resolve() == p.parent for p in inputs)
        why = "it holds the input images" if is_source else "they are not files the toolkit wrote there"
        raise ToolkitError(
            f"{option} {folder}: would overwrite {len(clashes)} existing file(s) ({shown}) and {why}; "
            f"choose another {option} folder (a new or empty one)"
        )


def record_written(folder: Path, names: list[str]) -> None:
    """Add `names` to the toolkit's record of its own files in `folder`."""
    import json

    files = sorted(written_before(folder) | set(names))
    (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=1) + "\n", encoding="utf-8")
