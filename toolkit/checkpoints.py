"""Reading checkpoints and weights files, and the one way from a command's `SPEC [--checkpoint CKPT]`
or `CKPT` to a model with its weights (`resolve_target`; `toolkit.load_model`, in `toolkit.build`,
for the API).

- Checkpoint files (`load_checkpoint`): a run's `last.pt` / `best.pt`, read with
  `torch.load(weights_only=True)` (no code runs), or a toolkit `.safetensors` file (the weights,
  the spec in its metadata). `load_training_checkpoint` also checks what `--resume` needs.
- Weights files (`read_state_dict`, `load_pretrained`): a backbone's `pretrained: PATH`: a plain state
  dict, a checkpoint holding it under "model" or "state_dict" (nested any depth), keys prefixed
  "module." (DDP) and/or "backbone." (a whole toolkit model: only those keys are kept). Loading is
  non-strict: no matching key, a shape mismatch or an unreadable file raise `ToolkitError`; missing
  or unexpected keys warn.
- Models (`resolve_target`, `load_model_weights`): a checkpoint carries its spec; the model is
  built from it with the backbone's `pretrained` reset to its default (the checkpoint's weights
  replace it); class names are checked once, where the weights are loaded.

Writing checkpoints (atomically) is the trainer's: `toolkit.engine.saving`. Torch is imported
inside the functions that read tensors, so commands can tell a checkpoint from a spec
(`is_checkpoint`) before torch is loaded.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.data.categories import checked_category_ids
from toolkit.errors import ToolkitError, first_line
from toolkit.kinds import BACKBONE
from toolkit.spec import SpecError, load_spec
from toolkit.spec.derived import NO_WEIGHTS, PRETRAINED

if TYPE_CHECKING:
    import torch
    from torch import nn

    from toolkit.build import Builder
    from toolkit.spec import Spec


# -- checkpoint files ---------------------------------------------------------------------------
#: file suffixes a command target is read as a checkpoint by (anything else is a spec)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")


def is_checkpoint(path: str | Path) -> bool:
    """Whether a command target names a checkpoint (by its suffix) rather than a spec."""
    return Path(path).suffix.lower() in CHECKPOINT_SUFFIXES


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
    import torch

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


# -- weights files ------------------------------------------------------------------------------
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
    import torch

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
            f"{first_line(exc) or 'no detail'}); without a network, "
            f"download {url or 'the weights'} on another machine and set pretrained: /path/to/{file_name}"
        ) from exc


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of the state-dict file `path` (on the CPU), unwrapped as the module docstring says.

    Read with `torch.load(weights_only=True)` (no code runs). Only tensor values are kept. Raises
    `ToolkitError` naming the file when it cannot be read or holds no mapping.
    """
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
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


# -- models with their weights ------------------------------------------------------------------
def checkpoint_model_spec(checkpoint: Mapping[str, Any], path: str, builder: Builder) -> dict[str, Any]:
    """The `{plugins, model}` part of a checkpoint's spec, pretrained weights switched off."""

    spec = checkpoint.get("spec")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("model"), Mapping):
        raise ToolkitError(
            f"checkpoint {path!r} carries no spec (no 'spec' entry with a 'model' section); build the model "
            "from its spec with toolkit.build_model(spec) and load the weights with load_state_dict"
        )
    model = dict(spec["model"])
    plugin_modules = spec.get("plugins") or []
    if not isinstance(plugin_modules, list) or not all(isinstance(m, str) for m in plugin_modules):
        raise ToolkitError(
            f"checkpoint {path!r}: its spec's 'plugins' entry is {plugin_modules!r}, not a list of module "
            "names; it is damaged or was not written by toolkit"
        )
    builder.plugins.add_modules(plugin_modules, source="spec")
    backbone = dict(model.get("backbone") or {})
    if backbone.get("type") in builder.registry(BACKBONE):
        backbone[PRETRAINED] = no_pretrained_weights(backbone["type"], builder)
    model["backbone"] = backbone
    return {"plugins": plugin_modules, "model": model}


def no_pretrained_weights(backbone_type: str, builder: Builder) -> Any:
    """The value of a registered backbone's `pretrained` that loads no weights (its default)."""

    field = builder.registry(BACKBONE).get(backbone_type).params.model_fields.get(PRETRAINED)
    return field.default if field is not None else NO_WEIGHTS


def check_class_names(checkpoint: Mapping[str, Any], class_names: Sequence[str], path: str | Path) -> None:
    """Refuse a checkpoint whose spec lists other class names than `class_names` (the spec the
    caller builds the model from): its outputs would be read under the wrong names."""
    spec = checkpoint.get("spec")
    model = spec.get("model") if isinstance(spec, Mapping) else None
    saved = model.get("class_names") if isinstance(model, Mapping) else None
    if not isinstance(saved, list) or list(saved) == list(class_names):
        return
    raise ToolkitError(
        f"checkpoint {str(path)!r} was trained with class_names {saved}, but the spec has "
        f"{list(class_names)}; evaluate it with the spec it was trained with (spec.yaml in its run folder) "
        "or set model.class_names to the checkpoint's"
    )


@dataclass(frozen=True)
class Loaded:
    """A resolved command target: the model (eval mode, on the CPU) with its weights, the spec it
    was built from, and the file the weights came from (the spec's stem when built without any)."""

    model: Any
    spec: Spec
    path: Path


def resolve_target(
    target: str | Path,
    checkpoint: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    builder: Builder,
    needs_data: bool = False,
    as_checkpoint: bool | None = None,
) -> Loaded:
    """The one way from a command's `SPEC [--checkpoint CKPT]` or `CKPT` to a model with its weights.

    - A checkpoint is read once; its model is built from the spec it carries (the whole spec when it
      still validates, data too; else its model section), with `overrides`, and the backbone's
      pretrained weights off: the checkpoint's replace them. `needs_data`: the carried spec must
      have a data section that validates.
    - A spec with a checkpoint: the spec with `overrides`, pretrained weights off as well.
    - A spec alone: built with fresh weights, with a warning (commands that need weights refuse a
      spec without --checkpoint before they get here).
    Class names are checked once, when the weights are loaded (`load_model_weights`). `as_checkpoint`
    overrides the suffix rule (`is_checkpoint`) for the target.
    """
    path = Path(target)
    if is_checkpoint(path) if as_checkpoint is None else as_checkpoint:
        if checkpoint is not None:
            raise ToolkitError("give a checkpoint either as the target or with --checkpoint, not both")
        read = load_checkpoint(path)  # once: it may weigh hundreds of MB
        spec = _carried_spec(read, path, overrides, builder, needs_data=needs_data)
        weights = path
    else:
        spec = _spec_without_pretrained(path, overrides, builder, off=checkpoint is not None)
        if checkpoint is None:
            import warnings

            warnings.warn(
                f"no --checkpoint: using {path}'s freshly built weights (pass --checkpoint runs/.../best.pt)",
                stacklevel=2,
            )
            return Loaded(builder.model(spec).eval(), spec, Path(path.stem))
        weights = Path(checkpoint)
        read = load_checkpoint(weights)
    model = builder.model(spec)
    load_model_weights(model, weights, read)
    return Loaded(model.eval(), spec, weights)


def _carried_spec(
    read: Mapping[str, Any], path: Path, overrides: Sequence[str], builder: Builder, *, needs_data: bool
) -> Spec:
    """The spec a checkpoint carries, pretrained weights off, with `overrides`."""

    section = checkpoint_model_spec(read, str(path), builder)  # pretrained weights off
    plugins = builder.plugins
    saved = dict(read.get("spec") or {})
    name = f"checkpoint {path}"
    if needs_data:
        if not isinstance(saved.get("data"), Mapping):
            raise ToolkitError(
                f"checkpoint {str(path)!r} carries no spec with a data section; evaluate it with its spec: "
                f"toolkit eval SPEC --checkpoint {path}"
            )
        return load_spec({**saved, **section}, overrides, plugins=plugins, name=name)
    try:  # the full spec (data too) when it still validates here; else its model section
        return load_spec({**saved, **section}, overrides, plugins=plugins, name=name)
    except SpecError:
        return load_spec(section, overrides, plugins=plugins, name=name)


def _spec_without_pretrained(path: Path, overrides: Sequence[str], builder: Builder, *, off: bool) -> Spec:
    """The spec file with `overrides`; `off`: its backbone's pretrained weights switched off."""
    import json

    spec = load_spec(path, overrides, plugins=builder.plugins)
    if not off:
        return spec
    wanted = no_pretrained_weights(spec.model.backbone.type, builder)
    if spec.model.backbone.model_dump(mode="json").get(PRETRAINED) == wanted:
        return spec
    overrides = [*overrides, f"model.backbone.{PRETRAINED}={json.dumps(wanted)}"]
    return load_spec(path, overrides, plugins=builder.plugins)


def load_model_weights(
    model: nn.Module, checkpoint_path: str | Path, checkpoint: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Load a run's checkpoint (read from `checkpoint_path` unless given) into `model`, with the
    dataset category ids it recorded; a mismatch names the checkpoint, counts the keys and shows the
    first few. A checkpoint trained with other class names than the model's is refused."""
    from toolkit.model import ToolkitModel

    checkpoint = checkpoint if checkpoint is not None else load_checkpoint(checkpoint_path)
    if isinstance(model, ToolkitModel):
        check_class_names(checkpoint, model.class_names, checkpoint_path)
    state = checkpoint.get("model")
    if not isinstance(state, dict):
        raise ToolkitError(
            f"checkpoint {str(checkpoint_path)!r} holds no model weights (no 'model' state dict); pass a "
            "run's best.pt or last.pt"
        )
    problem = state_dict_mismatch(model, state)
    if problem:
        raise ToolkitError(
            f"checkpoint {str(checkpoint_path)!r} does not fit the spec's model: {problem}; use the spec it "
            "was trained with (saved as spec.yaml in the run folder)"
        )
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = " ".join(str(exc).split())[:300]
        raise ToolkitError(
            f"checkpoint {str(checkpoint_path)!r} does not fit the spec's model: {first}; use the spec it "
            "was trained with (saved as spec.yaml in the run folder)"
        ) from None
    if isinstance(model, ToolkitModel):
        model.category_ids = checked_category_ids(
            checkpoint.get("category_ids"), len(model.class_names), f"checkpoint {str(checkpoint_path)!r}"
        )
    return checkpoint


def state_dict_mismatch(model: nn.Module, state: dict[str, Any], shown: int = 3) -> str:
    """What keeps `state` from loading strictly into `model`, counted with the first `shown` names of
    each kind (missing, unexpected, other shape); empty text when it fits."""
    import torch

    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [
        k
        for k in own
        if k in state and isinstance(state[k], torch.Tensor) and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)):
        if keys:
            names = ", ".join(keys[:shown]) + (", ..." if len(keys) > shown else "")
            parts.append(f"{len(keys)} weight(s) {what} ({names})")
    return "; ".join(parts)
