"""Writing checkpoints: atomically (temp file, fsync, rename, fsync the folder), as torch files or
toolkit .safetensors files; the random states a run resumes with. Reading them: `toolkit.checkpoints`.

Temp files are named `.NAME.PID.RANDOM.tmp`: a writer removes only the temp files of writers that
are no longer alive. Files get the user's umask (not mkstemp's 0600).
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch

from toolkit.checkpoints import SAFETENSORS_ENTRIES, require_safetensors

FORMAT_VERSION = 1


def _umask() -> int:
    """The process's umask (read from /proc when possible, without changing it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    try:
        os.fchmod(descriptor, 0o666 & ~_umask())
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    remove_stale_temp_files(path)
    return path


def save_atomic(obj: Any, path: str | Path) -> Path:
    """torch.save to a temp file in the same folder, fsync it, rename over `path`, fsync the folder.

    A process killed at any moment leaves either the previous file or the new one, never a torn one;
    when this returns, the new file is durable.
    """
    return _write_atomic(path, lambda handle: torch.save(obj, handle))


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` as `save_atomic` writes a checkpoint."""
    return _write_atomic(path, lambda handle: handle.write(data))


def save_safetensors(state: Mapping[str, Any], path: str | Path) -> Path:
    """The weights of a `best.pt`-like state as a .safetensors file, written atomically; its
    metadata holds the spec and the checkpoint's numbers (JSON), so `load_checkpoint` reads it back."""
    library = require_safetensors()
    tensors = {key: value.detach().cpu().contiguous() for key, value in state["model"].items()}
    metadata = {"format": "toolkit", "version": str(FORMAT_VERSION)}
    for key in SAFETENSORS_ENTRIES:
        if key in state:
            value = state[key]
            metadata[key] = json.dumps(None if isinstance(value, float) and math.isnan(value) else value)
    return write_atomic(path, library.save(tensors, metadata=metadata))


def remove_stale_temp_files(path: Path) -> None:
    """Remove `.NAME.PID.*.tmp` files next to `path` whose writer is dead (or is this process: its
    own saves finished); a live writer's temp file is left alone."""
    for temp in path.parent.glob(f".{path.name}.*.tmp"):
        pid_text = temp.name[len(path.name) + 2 :].split(".", 1)[0]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid == os.getpid() or not _alive(pid):
            temp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    except OSError:
        return False
    return True


def rng_state() -> dict[str, Any]:
    """Random states of torch (CPU and CUDA) and Python's `random`, as weights_only-safe objects."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
