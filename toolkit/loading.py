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
    from toolkit.engine.evaluation_run import load_model_weights
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
    from toolkit.engine.evaluation_run import load_model_weights
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
