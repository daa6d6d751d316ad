"""The one parameter type of file-writing loggers: a path inside the run folder."""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Annotated

from pydantic import AfterValidator, Field


def _inside_run(value: str) -> str:
    path = PurePath(value)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"{value!r} must be a path inside the run folder (relative, without '..')")
    return value


#: a file or folder of the run, relative to the run folder
RunPath = Annotated[
    str,
    Field(min_length=1, description="path relative to the run folder"),
    AfterValidator(_inside_run),
]


def in_run(run_dir: Path, relative: str) -> Path:
    """`run_dir / relative`, its parent folder created."""
    path = Path(run_dir) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
