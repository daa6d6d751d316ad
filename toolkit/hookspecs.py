"""The plugin contract: one hook per component kind, each receiving that kind's registry.

A plugin is a module (or object) with functions marked `@toolkit.hookimpl` whose names are
these hooks. Every hook is optional; a misspelled hook name is an error naming the plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from toolkit.registry import Registry

PROJECT_NAME = "toolkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def toolkit_register_backbones(registry: Registry) -> None:
    """Register backbones: `nn.Module`s mapping images [N,3,H,W] to features [N,C,H/s,W/s].

    The module has attributes `out_channels` (C) and `stride` (s). Optional, for heads with skip
    connections: `levels`, the (channels, stride) of each intermediate map, finest first, and
    `forward_levels(images)` returning those maps (the last is `forward`'s).
    """


@hookspec
def toolkit_register_heads(registry: Registry) -> None:
    """Register heads. The factory receives `in_channels`, `stride`, `num_classes` and `levels`
    (the backbone's, or None) from the builder, those it declares.

    A head with `uses_levels` True gets the list of the backbone's levels instead of its last map.
    The module's `forward(features)` returns a dict of raw outputs and `decode(outputs)` turns them
    into predictions in a way that traces to ONNX. Attribute `task`: "detection" or "classification".
    """


@hookspec
def toolkit_register_losses(registry: Registry) -> None:
    """Register losses: `forward(outputs, targets)` returns a dict of named terms plus the total `loss`."""


@hookspec
def toolkit_register_augmentations(registry: Registry) -> None:
    """Register augmentations: box-aware `torchvision.transforms.v2` transforms."""


@hookspec
def toolkit_register_attacks(registry: Registry) -> None:
    """Register attacks: `(model, images in [0,1], targets)` -> adversarial images in [0,1]."""


@hookspec
def toolkit_register_datasets(registry: Registry) -> None:
    """Register datasets yielding `(uint8 image [3,H,W], target)` samples."""


#: kind -> hook name, in the order hooks are called.
HOOK_FOR_KIND: dict[str, str] = {
    "backbone": "toolkit_register_backbones",
    "head": "toolkit_register_heads",
    "loss": "toolkit_register_losses",
    "augmentation": "toolkit_register_augmentations",
    "attack": "toolkit_register_attacks",
    "dataset": "toolkit_register_datasets",
}
