"""`toolkit.load_model(path)`: a run's checkpoint -> the model in eval mode, weights loaded, on a device.

A checkpoint carries its spec; only its `model` section (and `plugins`) is used, with the
backbone's `pretrained` reset to its default: the weights come from the checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import ToolkitError
from toolkit.plugins import PluginManager, get_plugin_manager

#: file suffixes a command target is read as a checkpoint by (anything else is a spec)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")


def is_checkpoint(path: str | Path) -> bool:
    """Whether a command target names a checkpoint (by its suffix) rather than a spec."""
    return Path(path).suffix.lower() in CHECKPOINT_SUFFIXES


if TYPE_CHECKING:
    import torch
    from torch import nn

    from toolkit.model import ToolkitModel
    from toolkit.spec import Spec


def checkpoint_model_spec(checkpoint: Mapping[str, Any], path: str, plugins: PluginManager) -> dict[str, Any]:
    """The `{plugins, model}` part of a checkpoint's spec, pretrained weights switched off."""
    from toolkit.spec.derived import NO_WEIGHTS, PRETRAINED

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
    plugins.add_modules(plugin_modules, source="spec")
    backbone = dict(model.get("backbone") or {})
    registry = plugins.registry("backbone")
    if backbone.get("type") in registry:
        field = registry.get(backbone["type"]).params.model_fields.get(PRETRAINED)
        backbone[PRETRAINED] = field.default if field is not None else NO_WEIGHTS
    model["backbone"] = backbone
    return {"plugins": plugin_modules, "model": model}


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


def load_model(
    path: str | Path, *, device: str | torch.device = "cpu", plugins: PluginManager | None = None
) -> ToolkitModel:
    """The model of a run's checkpoint (`best.pt` / `last.pt`), in eval mode, on `device`."""
    from toolkit.engine.checkpoint import load_checkpoint

    manager = plugins or get_plugin_manager()
    return model_from_checkpoint(load_checkpoint(path), path, plugins=manager).to(device).eval()


def model_from_checkpoint(
    checkpoint: Mapping[str, Any], path: str | Path, *, plugins: PluginManager
) -> ToolkitModel:
    """The model of an already read checkpoint (its spec's model section, its weights), on the CPU."""
    from toolkit.build import build_model
    from toolkit.spec import load_spec

    spec = load_spec(
        checkpoint_model_spec(checkpoint, str(path), plugins), plugins=plugins, name=f"checkpoint {path}"
    )
    model = build_model(spec, plugins=plugins)
    load_model_weights(model, path, dict(checkpoint))
    return model.eval()


def load_target(
    target: str, checkpoint: str | None, overrides: Sequence[str], plugins: PluginManager
) -> tuple[Any, Spec, Path]:
    """(model with weights in eval mode, its spec, the checkpoint's path or the spec's stem) of a
    `SPEC [--checkpoint CKPT]` or `CKPT` command target; a checkpoint alone brings its full spec
    (data too) when that still validates, else its model section."""
    from toolkit.build import build_model
    from toolkit.engine.checkpoint import load_checkpoint
    from toolkit.spec import SpecError, load_spec

    path = Path(target)
    if is_checkpoint(path):
        if checkpoint is not None:
            raise ToolkitError("give a checkpoint either as the target or with --checkpoint, not both")
        read = load_checkpoint(path)  # once: it may weigh hundreds of MB
        section = checkpoint_model_spec(read, str(path), plugins)  # pretrained weights off
        saved = dict(read.get("spec") or {})
        name = f"checkpoint {path}"
        try:  # the full spec (data too) when it still validates here; else its model section
            spec = load_spec({**saved, **section}, overrides, plugins=plugins, name=name)
        except SpecError:
            spec = load_spec(section, overrides, plugins=plugins, name=name)
        model = build_model(spec, plugins=plugins)  # the overrides reach the model too
        load_model_weights(model, path, read)
        return model.eval(), spec, path
    spec = load_spec(path, overrides, plugins=plugins)
    model = build_model(spec, plugins=plugins)
    if checkpoint is not None:
        load_model_weights(model, checkpoint)
        return model.eval(), spec, Path(checkpoint)
    import warnings

    warnings.warn(
        f"no --checkpoint: using {path}'s freshly built weights (pass --checkpoint runs/.../best.pt)",
        stacklevel=2,
    )
    return model.eval(), spec, Path(path.stem)


def checkpoint_spec(path: str | Path, overrides: Sequence[str], plugins: PluginManager) -> Spec:
    """The full spec a checkpoint carries (data too, the backbone's pretrained weights off), with
    `overrides`; a user error when it has none."""
    from toolkit.engine.checkpoint import load_checkpoint
    from toolkit.spec import load_spec

    read = load_checkpoint(path)
    saved = read.get("spec")
    if not isinstance(saved, Mapping) or not isinstance(saved.get("data"), Mapping):
        raise ToolkitError(
            f"checkpoint {str(path)!r} carries no spec with a data section; evaluate it with its spec: "
            f"toolkit eval SPEC --checkpoint {path}"
        )
    section = checkpoint_model_spec(read, str(path), plugins)  # pretrained weights off: its own replace them
    return load_spec({**saved, **section}, overrides, plugins=plugins, name=f"checkpoint {path}")


def load_model_weights(
    model: nn.Module, checkpoint_path: str | Path, checkpoint: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Load a run's checkpoint (read from `checkpoint_path` unless given) into `model`, with the
    dataset category ids it recorded; a mismatch names the checkpoint, counts the keys and shows the
    first few. A checkpoint trained with other class names than the model's is refused."""
    from toolkit.data.categories import checked_category_ids
    from toolkit.engine.checkpoint import load_checkpoint
    from toolkit.model import ToolkitModel

    checkpoint = checkpoint if checkpoint is not None else load_checkpoint(checkpoint_path)
    class_names = getattr(model, "class_names", None)
    if class_names is not None:
        check_class_names(checkpoint, class_names, checkpoint_path)
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
