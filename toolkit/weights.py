"""Loading pretrained weights from local state-dict files into any module (backbones first).

The builder calls `load_pretrained` for a spec's `pretrained: PATH`, whatever the backbone; a
backbone only declares the key prefixes to drop (`ignored_weight_prefixes`, e.g. a classifier's
"fc."). Imported only when a model is built, so torch at the top is fine.

Accepted files (`read_state_dict`): a plain state dict, a checkpoint holding it under "model" or
"state_dict" (nested any depth), keys prefixed "module." (DDP) and/or "backbone." (a whole
toolkit model: only those keys are kept). Loading (`load_weights`) is non-strict: no matching key,
a shape mismatch or an unreadable file raise `ToolkitError`; missing or unexpected keys warn.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from toolkit.errors import ToolkitError

__all__ = ["download_state_dict", "load_pretrained", "load_weights", "read_state_dict"]

_SHOWN_KEYS = 5
_WRAPPERS = ("model", "state_dict")  # checkpoint keys holding the state dict, tried in this order
_DDP_PREFIX = "module."
_MODEL_PREFIX = "backbone."


def _key_list(keys: Iterable[str]) -> str:
    """`'a', 'b', ... (N in all)`: the first few keys (sorted) and the count."""
    keys = sorted(keys)
    shown = ", ".join(repr(k) for k in keys[:_SHOWN_KEYS])
    more = ", ..." if len(keys) > _SHOWN_KEYS else ""
    return f"{shown}{more} ({len(keys)} in all)"


def _unwrap(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The state dict inside `obj`: follow "model"/"state_dict", strip "module."/"backbone."."""
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise ToolkitError(
            f"pretrained weights {source!r} hold a {type(obj).__name__}, not a state dict; "
            "save model.state_dict() (or a checkpoint dict with a 'model' key)"
        )
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if state and all(k.startswith(_DDP_PREFIX) for k in state):
        state = {k[len(_DDP_PREFIX) :]: v for k, v in state.items()}
    if any(k.startswith(_MODEL_PREFIX) for k in state):
        state = {k[len(_MODEL_PREFIX) :]: v for k, v in state.items() if k.startswith(_MODEL_PREFIX)}
    return state


def download_state_dict(weights: Any, *, component: str) -> dict[str, torch.Tensor]:
    """torchvision `weights.get_state_dict()` (downloaded once into TORCH_HOME's cache).

    Without a network (or with a damaged cache) raises `ToolkitError` saying where the file comes
    from and how to give it as a local file (`pretrained: /path/to/FILE`) instead.
    """
    url = str(getattr(weights, "url", "") or "")
    file_name = url.rsplit("/", 1)[-1] or f"{component}.pth"
    try:
        return weights.get_state_dict(progress=False)
    except Exception as exc:
        raise ToolkitError(
            f"{component}: cannot get torchvision's {weights} weights ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'}); without a network, "
            f"download {url or 'the weights'} on another machine and set pretrained: /path/to/{file_name}"
        ) from exc


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of the state-dict file `path` (on the CPU), unwrapped as the module docstring says.

    Read with `torch.load(weights_only=True)` (no code runs). Only tensor values are kept. Raises
    `ToolkitError` naming the file when it cannot be read or holds no mapping.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        from toolkit.engine.checkpoint import load_problem

        raise ToolkitError(
            f"cannot read pretrained weights {str(path)!r} as a PyTorch state dict "
            f"({load_problem(exc)}); pass a file written with torch.save(state_dict)"
        ) from exc
    return _unwrap(obj, str(path))


def _load(
    module: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    component: str,
    ignore_prefixes: tuple[str, ...],
    stacklevel: int,
) -> None:
    ignore_prefixes = tuple(ignore_prefixes)
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    own = module.state_dict()
    matched = own.keys() & state.keys()
    if not matched:
        got = _key_list(state) if state else "no tensors at all"
        wanted = [k for k in own if not k.startswith(ignore_prefixes)][:2]
        expected = ", ".join(repr(k) for k in wanted) if wanted else "none: the module has no weights"
        raise ToolkitError(
            f"pretrained weights {source!r}: no key matches a {component} backbone "
            f"(got {got}; expected keys like {expected}); is this a {component} state dict? "
            "Whole-model checkpoints need the 'backbone.' prefix"
        )
    mismatched = sorted(k for k in matched if state[k].shape != own[k].shape)
    if mismatched:
        details = ", ".join(
            f"{k!r} file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
            for k in mismatched[:_SHOWN_KEYS]
        )
        more = f" and {len(mismatched) - _SHOWN_KEYS} more" if len(mismatched) > _SHOWN_KEYS else ""
        raise ToolkitError(
            f"pretrained weights {source!r} do not fit {component}: shape mismatch for "
            f"{details}{more} ({len(mismatched)} key(s)); is this a {component} state dict? "
            "Use the backbone the weights were trained with"
        )
    result = module.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(ignore_prefixes)]
    if missing:
        warnings.warn(
            f"pretrained weights {source!r}: {len(missing)} {component} key(s) missing, "
            f"left at their initial values: {_key_list(missing)}",
            UserWarning,
            stacklevel=stacklevel,
        )
    if result.unexpected_keys:
        warnings.warn(
            f"pretrained weights {source!r}: {len(result.unexpected_keys)} unexpected key(s) "
            f"ignored: {_key_list(result.unexpected_keys)}",
            UserWarning,
            stacklevel=stacklevel,
        )


def load_weights(
    module: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    component: str,
    ignore_prefixes: tuple[str, ...] = (),
) -> None:
    """Load `state` into `module` non-strictly; messages name `source` (a file) and `component`.

    Keys starting with one of `ignore_prefixes` are dropped silently (and the module's own keys
    under them are not reported missing). Raises `ToolkitError` when no key matches or when a
    matching key's shape differs; warns (`UserWarning`, one each) about missing keys (left at
    their initial values) and unexpected keys (ignored).
    """
    _load(module, state, source=source, component=component, ignore_prefixes=ignore_prefixes, stacklevel=3)


def load_pretrained(
    module: torch.nn.Module, path: str | Path, *, component: str, ignore_prefixes: tuple[str, ...] = ()
) -> None:
    """`read_state_dict(path)` loaded into `module` by `load_weights` (source: the path)."""
    state = read_state_dict(path)
    _load(module, state, source=str(path), component=component, ignore_prefixes=ignore_prefixes, stacklevel=3)
