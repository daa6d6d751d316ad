"""What every hostile-input case asserts: exit code 2, one `toolkit: error:` line naming the thing,
no traceback, and nothing changed outside the places the command was allowed to write."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterable
from pathlib import Path

Snapshot = dict[str, tuple[str, str]]


def snapshot(root: Path) -> Snapshot:
    """Every entry under `root` (relative path -> kind and content digest); symlinks not followed."""
    entries: Snapshot = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.is_symlink():
            entries[relative] = ("link", str(path.readlink()))
        elif path.is_dir():
            entries[relative] = ("dir", "")
        elif not path.is_file():  # a FIFO or device: reading it could block
            entries[relative] = ("special", "")
        else:
            entries[relative] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return entries


def changes(before: Snapshot, after: Snapshot, *, allowed: Iterable[str] = ()) -> list[str]:
    """Entries added, removed or modified, outside the `allowed` relative paths (and what they hold)."""
    allowed = tuple(allowed)

    def inside(name: str) -> bool:
        return any(name == a or name.startswith(f"{a}/") for a in allowed)

    names = set(before) | set(after)
    return sorted(n for n in names if before.get(n) != after.get(n) and not inside(n))


def error_line(
    result: subprocess.CompletedProcess[str], *needles: str, code: int = 2, also: tuple[str, ...] = ()
) -> str:
    """Assert a clean user error and return its line: exit `code`, no traceback, exactly one
    `toolkit: error:` line, nothing else on stderr but warnings (and lines starting with one of
    `also`), and every needle in the line."""
    stderr = result.stderr
    assert result.returncode == code, f"exit {result.returncode}, expected {code}:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("toolkit: error: ")]
    assert len(errors) == 1, stderr[-3000:]
    expected = ("toolkit: error: ", "toolkit: warning: ", *also)
    others = [line for line in lines if not line.startswith(expected)]
    assert not others, f"more than the error line on stderr: {others}"
    line = errors[0]
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line
