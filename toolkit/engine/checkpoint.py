"""Checkpoints: written atomically (temp file, fsync, rename), read with `weights_only=True`."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import torch

from toolkit.errors import ToolkitError

FORMAT_VERSION = 1


def save_atomic(obj: Any, path: str | Path) -> Path:
    """torch.save to a temp file in the same folder, fsync it, rename over `path`, fsync the folder.

    A process killed at any moment leaves either the previous file or the new one, never a torn one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a process killed while saving
        stale.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint without executing code (`weights_only=True`); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ToolkitError(
            f"checkpoint {str(path)!r} not found; check the path (runs write last.pt and best.pt)"
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ToolkitError(
            f"cannot read checkpoint {str(path)!r}: {type(exc).__name__}: {exc}. "
            "It is not a toolkit checkpoint or it is damaged; use last.pt or best.pt of a run"
        ) from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise ToolkitError(f"{str(path)!r} is not a toolkit checkpoint (no 'model' entry)")
    return checkpoint


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
