"""A training run's folder: what may be written there, and the lock its run holds for its life.

A folder is a run when it holds the run marker (`.toolkit-run.lock`, written by the run that
creates it) or a `last.pt`. Rules (`check_run_dir`), before anything is built or written:

- a new or empty folder: a new run;
- a run with `last.pt`: only `--resume` continues it (a run is never overwritten);
- a run without `last.pt` (killed before its first checkpoint): `--resume` or `--exist-ok` start
  it again from the first epoch;
- a non-empty folder that is not a run: refused, unless `--exist-ok` (write into it anyway, keeping
  its files: refused when one of them has a name the run writes, `RUN_OUTPUTS` or any `*.png`, the
  evaluators' plots, or a file a logger of the spec would write, `contracts.WritesRunFiles`);
- a folder locked by a live run (another training writing there): refused.

The marker is also the lock: `fcntl.flock` held by the run that owns the folder until it ends, so
two trainings never write into one folder. Imported by the CLI before torch: keep it light.

The demos replace their own earlier runs (`fresh_run_dir`) and find their configs (`demo_config`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from toolkit.errors import ToolkitError
from toolkit.outputs import check_output_dir

MARKER = ".toolkit-run.lock"
LAST = "last.pt"
#: the files a run writes under fixed names (the loggers' defaults included); plots are `*.png`
RUN_OUTPUTS = frozenset(
    {LAST, "best.pt", "best.safetensors", "spec.yaml", "metrics.jsonl", "results.csv", "best.onnx"}
)

#: lock descriptors this process holds; a forked child (a DataLoader worker) closes its copies, so
#: the lock ends with the run's process and not with its last worker
_HELD: set[int] = set()


def _close_held_in_child() -> None:
    for descriptor in _HELD:
        with contextlib.suppress(OSError):
            os.close(descriptor)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


class RunDirError(ToolkitError):
    """The run folder cannot be used as asked (exists as a file, is in use, holds a run...)."""


def is_main_process() -> bool:
    """Rank 0 under torchrun (or a single process): the one process that owns the run folder."""
    return os.environ.get("RANK", "0").strip() in ("", "0")


def holds_run(path: Path) -> bool:
    """Whether the folder `path` holds a training run (its marker or last.pt)."""
    return (path / LAST).exists() or (path / MARKER).exists()


def user_entries(path: Path) -> frozenset[str]:
    """The names in `path` that no toolkit run wrote: every entry of an existing folder that holds
    no run (what `--exist-ok` keeps); nothing for a run's folder or a folder that does not exist."""
    if not path.is_dir() or holds_run(path):
        return frozenset()
    return frozenset(entry.name for entry in path.iterdir() if entry.name != MARKER)


def check_run_dir(path: Path, *, resume: bool, exist_ok: bool) -> None:
    """Raise RunDirError when a run may not use `path` as asked (see the module docstring).

    Reads only: nothing is created, a lock is only tried and released.
    """
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--out {path} is a file, not a folder; choose a folder for the run")
    if not path.exists():
        _check_creatable(path)
        if resume:
            raise RunDirError(
                f"--resume: {path / LAST} not found ({path} does not exist); start the run without --resume"
            )
        return
    _check_writable(path)
    owner = _locked_by(path / MARKER)
    if owner is not None:
        raise RunDirError(
            f"{path} is in use by another training run ({owner}); wait for it to end or choose "
            "another folder with --out"
        )
    has_last = (path / LAST).exists()
    is_run = holds_run(path)
    if resume:
        if not is_run:
            raise RunDirError(
                f"--resume: {path / LAST} not found ({path} holds no run); start the run without --resume"
            )
        return
    if has_last:
        raise RunDirError(
            f"{path} already holds a run (last.pt); continue it with --resume or choose another folder "
            "with --out"
        )
    others = sorted(entry.name for entry in path.iterdir() if entry.name != MARKER)
    if not others:
        return
    if exist_ok and not is_run:
        clashes = [name for name in others if name in RUN_OUTPUTS or name.endswith(".png")]
        if clashes:
            shown = ", ".join(clashes[:5]) + (", ..." if len(clashes) > 5 else "")
            raise RunDirError(
                f"--out {path}: --exist-ok keeps the folder's own files, but the run would overwrite "
                f"{len(clashes)} of them ({shown}); move them away or choose another folder with --out"
            )
        return
    if exist_ok:
        return
    if is_run:
        raise RunDirError(
            f"{path} holds a run that saved no checkpoint; start it again with --resume or --exist-ok, "
            "or choose another folder with --out"
        )
    shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
    raise RunDirError(
        f"--out {path} is a non-empty folder that is not a toolkit run ({len(others)} entries: {shown}); "
        "choose a new or empty folder, or pass --exist-ok to write the run into it"
    )


class RunLock:
    """The run's hold on its folder: the marker file, locked (`flock`) until `release`."""

    def __init__(
        self, path: Path, descriptor: int, *, created_dirs: list[Path], created_marker: bool
    ) -> None:
        self.path = path
        self._descriptor: int | None = descriptor
        self._created_dirs = created_dirs  # deepest first
        self._created_marker = created_marker

    def release(self) -> None:
        """Unlock (the marker stays: it marks the folder as a run)."""
        if self._descriptor is not None:
            _HELD.discard(self._descriptor)
            os.close(self._descriptor)  # closing drops the flock
            self._descriptor = None

    def abandon(self) -> None:
        """The run failed before writing anything: remove what claiming created, then release."""
        if self._created_marker:
            (self.path / MARKER).unlink(missing_ok=True)
        self.release()
        for folder in self._created_dirs:
            try:
                folder.rmdir()
            except OSError:  # not empty: something else was written there, keep it
                break


def claim_run_dir(path: Path, *, resume: bool, exist_ok: bool) -> RunLock:
    """Check `path` (check_run_dir), create it and lock it for this run; RunDirError otherwise."""
    check_run_dir(path, resume=resume, exist_ok=exist_ok)
    import fcntl

    created_dirs = [folder for folder in (path, *path.parents) if not folder.exists()]
    marker = path / MARKER
    created_marker = not marker.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(marker, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise RunDirError(f"--out {path}: cannot create the run folder: {exc.strerror or exc}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        owner = _owner_text(marker)
        raise RunDirError(
            f"{path} is in use by another training run ({owner}); wait for it to end or choose "
            "another folder with --out"
        ) from None
    _HELD.add(descriptor)
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"pid {os.getpid()}\n".encode())
    return RunLock(path, descriptor, created_dirs=created_dirs, created_marker=created_marker)


def _locked_by(marker: Path) -> str | None:
    """Who holds the lock on `marker` (a description), or None when nobody does."""
    if not marker.is_file():
        return None
    import fcntl

    try:
        descriptor = os.open(marker, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _owner_text(marker)
    finally:
        os.close(descriptor)  # also releases the shared lock just taken
    return None


def _owner_text(marker: Path) -> str:
    try:
        text = marker.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    return f"{text}, lock {marker}" if text.startswith("pid ") else f"lock {marker}"


def _check_creatable(path: Path) -> None:

    try:
        check_output_dir(path, "--out")  # probes: creates the folder and removes it again
    except ToolkitError as exc:
        raise RunDirError(str(exc)) from None


def _check_writable(directory: Path) -> None:
    if not os.access(directory, os.W_OK | os.X_OK):
        raise RunDirError(f"--out {directory}: the folder is not writable")


def demo_config(path: Path | None, default: Path) -> Path:
    """`path`, else the demo's `default` config; a user error when the file is not there."""
    config = path or default
    if not config.is_file():
        raise ToolkitError(
            f"demo config {str(config)!r} not found; run from the repository root or pass --config"
        )
    return config


def fresh_run_dir(directory: Path) -> Path:
    """`directory` created empty. An earlier run there (a toolkit run folder, or an empty folder) is
    replaced; a folder holding anything else is refused: the demo never deletes the user's files."""
    if directory.exists():
        replaceable = directory.is_dir() and (holds_run(directory) or not any(directory.iterdir()))
        if not replaceable:
            raise ToolkitError(
                f"{directory} exists and is not a toolkit run the demo wrote; the demo replaces its own "
                "runs only: move it away or pass another --out"
            )
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    return directory
