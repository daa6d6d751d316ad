"""The plugin contract: one hook per component kind, each receiving that kind's registry.

A plugin is a module (or object) with functions marked `@toolkit.hookimpl` whose names are
these hooks. Every hook is optional; a misspelled hook name is an error naming the plugin.
What each kind's factory must return is stated once, as typing.Protocols, in `toolkit.contracts`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from toolkit.kinds import HOOK_FOR_KIND

if TYPE_CHECKING:
    from toolkit.registry import Registry

PROJECT_NAME = "toolkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["HOOK_FOR_KIND", "PROJECT_NAME", "hookimpl", "hookspec"]


@hookspec
def toolkit_register_tasks(registry: Registry) -> None:
    """Register tasks (`contracts.Task`): what differs between detection, classification, ...

    A head names its task by the `task` attribute; the task packs targets for the head, scores
    predictions (its evaluator and metrics), turns decoded outputs into per-image results in
    original image pixels, draws them and names the outputs an export carries.
    """


@hookspec
def toolkit_register_backbones(registry: Registry) -> None:
    """Register backbones (`contracts.Backbone`): images [N,3,H,W] -> features [N,C,H/s,W/s].

    The module has `out_channels` (C) and `stride` (s). Optional: `levels` (a FeatureInfo, finest
    first) with `forward_levels(images)`, `set_frozen_stages(k)`, and `normalization` (the
    mean and std its weights expect).
    """


@hookspec
def toolkit_register_heads(registry: Registry) -> None:
    """Register heads (`contracts.Head`). The factory receives `in_channels`, `stride`,
    `num_classes` and `levels` (the backbone's, or None) from the builder, those it declares.

    `forward(features)` returns a dict of raw outputs, `decode(outputs)` turns them into
    predictions in a way that traces to ONNX, `task` names a registered task, `default_loss` is
    the loss used when the spec sets none and `target_encoder(input_size)` packs training targets.
    """


@hookspec
def toolkit_register_losses(registry: Registry) -> None:
    """Register losses (`contracts.Loss`): `forward(outputs, targets)` returns named terms plus `loss`."""


@hookspec
def toolkit_register_augmentations(registry: Registry) -> None:
    """Register augmentations (`contracts.Augmentation`): box-aware `torchvision.transforms.v2` transforms."""


@hookspec
def toolkit_register_attacks(registry: Registry) -> None:
    """Register attacks (`contracts.Attack`): `(model, images in [0,1], targets)` -> images in [0,1]."""


@hookspec
def toolkit_register_datasets(registry: Registry) -> None:
    """Register datasets (`contracts.Dataset`) yielding `(uint8 image [3,H,W], target)` samples."""


@hookspec
def toolkit_register_loggers(registry: Registry) -> None:
    """Register run loggers (`contracts.RunLogger`), named by the spec's `train.loggers`.

    The factory's keyword arguments are the logger's spec parameters. The trainer calls
    `start(run_dir, resume_step=...)` once, then `log(record)` for each "train", "val" and "epoch"
    record, `log_image(tag, path, step=...)` for each plot it writes, `flush()` before every
    checkpoint save and `finish(summary)` at the end; a logger that raises is warned about once
    and dropped, the run goes on (`toolkit.engine.loggers.RunLoggers`).
    """
