"""Checkpoints: written atomically (temp file, fsync, rename), read with `weights_only=True`.

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

from toolkit.errors import ToolkitError

FORMAT_VERSION = 1
#: what a run's checkpoint holds for `--resume`, with the type each entry must have
TRAINING_ENTRIES: dict[str, type | tuple[type, ...]] = {
    "model": Mapping,
    "optimizer": Mapping,
    "scheduler": Mapping,
    "scaler": Mapping,
    "epoch": int,
    "step": int,
    "rng": Mapping,
    "spec": Mapping,
}


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


#: metadata entries of a toolkit .safetensors file (besides the weights), JSON-encoded
SAFETENSORS_ENTRIES = ("spec", "epoch", "step", "best_metric", "best_value")


def require_safetensors() -> Any:
    """The safetensors.torch module; a ToolkitError naming the extra when it is not installed."""
    try:
        import safetensors.torch
    except ImportError:
        raise ToolkitError(
            "safetensors files need the safetensors package: pip install 'toolkit[safetensors]'"
        ) from None
    return safetensors.torch


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


def _load_safetensors(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    library = require_safetensors()
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        weights = library.load_file(str(path), device=str(map_location))
        checkpoint: dict[str, Any] = {"model": weights}
        for key in SAFETENSORS_ENTRIES:
            if key in metadata:
                checkpoint[key] = json.loads(metadata[key])
    except Exception as exc:
        raise ToolkitError(
            f"cannot read {str(path)!r}: {load_problem(exc)}. It is not a safetensors file or it is damaged"
        ) from None
    if metadata.get("format") != "toolkit":
        raise ToolkitError(
            f"{str(path)!r} is a safetensors file without a toolkit spec in its metadata; load its "
            "weights into a model built from a spec (pretrained: PATH) instead"
        )
    return checkpoint


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


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint without executing code (`weights_only=True`), or a toolkit .safetensors file
    (weights plus the spec in its metadata); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ToolkitError(
            f"checkpoint {str(path)!r} not found; check the path (runs write last.pt and best.pt)"
        )
    if path.suffix == ".safetensors":
        return _load_safetensors(path, map_location)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ToolkitError(
            f"cannot read checkpoint {str(path)!r}: {load_problem(exc)}. It is not a toolkit checkpoint, "
            "it is damaged, or it holds code (never run); use last.pt or best.pt of a run"
        ) from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise ToolkitError(f"{str(path)!r} is not a toolkit checkpoint (no 'model' entry)")
    if not isinstance(checkpoint["model"], Mapping):
        raise ToolkitError(
            f"{str(path)!r} is not a toolkit checkpoint: its 'model' entry is a "
            f"{type(checkpoint['model']).__name__}, not a state dict"
        )
    return checkpoint


_TORCH_LOAD_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def load_problem(exc: Exception) -> str:
    """What torch.load said is wrong with a file, on one line (without its weights_only boilerplate)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = [line for line in lines if not line.startswith(_TORCH_LOAD_BOILERPLATE)]
    text = (detail or lines or [""])[0]
    if len(text) > 200:
        text = text[:200].rsplit(" ", 1)[0] + " ..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_training_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """`load_checkpoint`, then check every entry `--resume` needs (TRAINING_ENTRIES); the error
    names the file and what is missing or of the wrong type."""
    checkpoint = load_checkpoint(path, map_location=map_location)
    missing = [key for key in TRAINING_ENTRIES if key not in checkpoint]
    wrong = [
        f"{key} ({type(checkpoint[key]).__name__})"
        for key, kind in TRAINING_ENTRIES.items()
        if key in checkpoint and (not isinstance(checkpoint[key], kind) or isinstance(checkpoint[key], bool))
    ]
    spec = checkpoint.get("spec")
    if isinstance(spec, Mapping) and not isinstance(spec.get("model"), Mapping):
        wrong.append("spec (no 'model' section)")
    if missing or wrong:
        problems = []
        if missing:
            problems.append(f"no {', '.join(repr(k) for k in missing)}")
        if wrong:
            problems.append(f"wrong entries: {', '.join(wrong)}")
        raise ToolkitError(
            f"--resume: {str(path)!r} is not a run checkpoint ({'; '.join(problems)}); "
            "resume from the last.pt a toolkit run wrote"
        )
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
