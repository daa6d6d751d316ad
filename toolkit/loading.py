"""Models with their weights: `resolve_target` (every command's `SPEC [--checkpoint CKPT]` or `CKPT`),
`toolkit.load_model(path)` and `load_model_weights`, the one place a checkpoint's weights reach a model.

A checkpoint carries its spec; the model is built from it with the backbone's `pretrained` reset
to its default: the weights come from the checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.build import Builder
from toolkit.errors import ToolkitError
from toolkit.kinds import BACKBONE
from toolkit.plugins import PluginManager

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


def checkpoint_model_spec(checkpoint: Mapping[str, Any], path: str, builder: Builder) -> dict[str, Any]:
    """The `{plugins, model}` part of a checkpoint's spec, pretrained weights switched off."""
    from toolkit.spec.derived import PRETRAINED

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
    from toolkit.spec.derived import NO_WEIGHTS, PRETRAINED

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


def load_model(
    path: str | Path, *, device: str | torch.device = "cpu", plugins: PluginManager | None = None
) -> ToolkitModel:
    """The model of a run's checkpoint (`best.pt` / `last.pt`), in eval mode, on `device` (components
    from `plugins`, default the process-wide plugin manager)."""
    return resolve_target(path, builder=Builder(plugins), as_checkpoint=True).model.to(device)


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
    from toolkit.engine.checkpoint import load_checkpoint

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
    from toolkit.spec import SpecError, load_spec

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

    from toolkit.spec import load_spec
    from toolkit.spec.derived import PRETRAINED

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
    from toolkit.data.categories import checked_category_ids
    from toolkit.engine.checkpoint import load_checkpoint
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
