"""timm feature extractors (`features_only`) as toolkit backbones.

Imported only when a model is built or its input multiple is read (see `timm.py`), so timm and
torch stay out of plugin listing. The feature levels are timm's `feature_info` (channels and
reduction per level); the normalization is the model's pretrained config; the state-dict keys are
the names of timm's own (classification) model, so a timm state dict loads through the core
(`toolkit.checkpoints`) whatever the wrapper timm picks for `features_only`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import timm
import torch
from timm.data import resolve_data_config
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from toolkit.contracts import IMAGENET_NORMALIZATION, FeatureInfo, Normalization
from toolkit.errors import ToolkitError, closest

_WRAPPERS = ("model", "body")  # where timm's feature wrappers (getter, hook) keep the whole model


# -- creating timm models ---------------------------------------------------------------------
def _check_name(model_name: str) -> None:
    if not timm.is_model(model_name):
        architecture = model_name.split(".", 1)[0]
        hint = closest(architecture, timm.list_models())
        suggestion = f" (did you mean {' or '.join(hint)}?)" if hint else ""
        raise ToolkitError(
            f"timm backbone: unknown timm model {model_name!r}{suggestion}; "
            "list them with python -c 'import timm; print(timm.list_models())'"
        )


def _features_kwargs(out_indices: Sequence[int] | None) -> dict[str, Any]:
    return {"features_only": True, **({"out_indices": tuple(out_indices)} if out_indices else {})}


def create_features(
    model_name: str, out_indices: Sequence[int] | None, *, pretrained: bool = False, meta: bool = False
) -> nn.Module:
    """`timm.create_model(model_name, features_only=True, out_indices=...)`, errors as ToolkitError.

    `meta`: on the meta device (no memory, no initialization cost), to read the feature levels.
    """
    _check_name(model_name)
    indices = f" with out_indices {list(out_indices)}" if out_indices else ""
    if not meta:  # a bad name or out_indices is reported as such, not as a failed download
        feature_levels(model_name, tuple(out_indices) if out_indices else None)
    try:
        if meta:
            with torch.device("meta"):
                return timm.create_model(model_name, **_features_kwargs(out_indices))
        return timm.create_model(model_name, pretrained=pretrained, **_features_kwargs(out_indices))
    except Exception as exc:
        if pretrained:
            raise ToolkitError(
                f"timm backbone: could not get timm's pretrained weights for {model_name!r} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); without a "
                f"network, save them on a connected machine (torch.save(timm.create_model({model_name!r}, "
                "pretrained=True).state_dict(), 'weights.pt')) and set pretrained: weights.pt"
            ) from exc
        raise ToolkitError(
            f"timm backbone: timm cannot build {model_name!r} as a feature extractor{indices} "
            f"({type(exc).__name__}: {exc}); pick a model that supports features_only"
            f"{_level_count(model_name) if out_indices else ''}"
        ) from exc


def _level_count(model_name: str) -> str:
    """`, and out_indices in 0..N-1 (its N feature levels)` when timm's model lists its levels."""
    try:
        with torch.device("meta"):
            count = len(timm.create_model(model_name).feature_info)
    except Exception:
        return ", and out_indices within its feature levels"
    return f", and out_indices in 0..{count - 1} (its {count} feature levels)"


@functools.lru_cache(maxsize=32)
def feature_levels(model_name: str, out_indices: tuple[int, ...] | None) -> FeatureInfo:
    """(channels, stride) of the levels timm's `features_only` model returns, finest first."""
    info = create_features(model_name, out_indices, meta=True).feature_info
    return FeatureInfo(zip(info.channels(), info.reduction(), strict=True))


def input_multiple(levels: FeatureInfo) -> int:
    """What input sides must be multiples of: the least common multiple of the levels' strides."""
    return math.lcm(*levels.strides())


# -- timm's names for the wrapper's keys ------------------------------------------------------
def _timm_module_name(name: str, timm_names: set[str]) -> str | None:
    """The name in timm's classification model of the feature wrapper's module `name`, if found.

    timm's wrappers keep modules as they are (custom feature classes), under `model.`/`body.`
    (getter and hook wrappers), or flatten a first-level Sequential (`stages.0` -> `stages_0`).
    """
    if name in timm_names:
        return name
    for wrapper in _WRAPPERS:
        if name == wrapper:
            return ""
        if name.startswith(wrapper + ".") and name[len(wrapper) + 1 :] in timm_names:
            return name[len(wrapper) + 1 :]
    head, dot, rest = name.partition(".")
    for position, char in enumerate(head):
        if char == "_":
            candidate = f"{head[:position]}.{head[position + 1 :]}{dot}{rest}"
            if candidate in timm_names:
                return candidate
    return None


def timm_names(features: nn.Module, model_name: str) -> tuple[dict[str, str], set[str]]:
    """`({module name in features: its name in timm's model}, the state-dict keys of timm's model)`.

    timm's classification model is built on the meta device (no memory, no initialization).
    """
    with torch.device("meta"):
        full = timm.create_model(model_name)
    names = {name for name, _ in full.named_modules()}
    found = {name: _timm_module_name(name, names) for name, _ in features.named_modules()}
    return {name: target for name, target in found.items() if target is not None}, set(full.state_dict())


def key_names(features: nn.Module, modules: Mapping[str, str], prefix: str) -> dict[str, str]:
    """`{prefix + state-dict key of features: its key in timm's model}`.

    Keys whose module has no counterpart keep their name; if two keys would get one name, every
    key keeps its name (nothing is renamed).
    """
    mapping: dict[str, str] = {}
    for key in features.state_dict(keep_vars=True):
        module, _, leaf = key.rpartition(".")
        target = modules.get(module)
        mapping[prefix + key] = key if target is None else (f"{target}.{leaf}" if target else leaf)
    if len(set(mapping.values())) != len(mapping):
        return {key: key for key in mapping}
    return mapping


def _save_with_timm_names(module: TimmBackbone, state: dict[str, Any], prefix: str, metadata: Any) -> None:
    """state_dict post-hook: the backbone's keys under timm's names (order kept)."""
    ours = [key for key in state if key.startswith(prefix)]
    values = [state.pop(key) for key in ours]
    for key, value in zip(ours, values, strict=True):
        local = key[len(prefix) :]
        state[prefix + module.timm_keys.get(local, local)] = value


def _load_with_timm_names(
    module: TimmBackbone, state: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
) -> None:
    """load_state_dict pre-hook: timm's names back to the wrapper's."""
    module._load_prefix = prefix
    ours = [key for key in state if key.startswith(prefix)]
    values = [state.pop(key) for key in ours]
    for key, value in zip(ours, values, strict=True):
        local = key[len(prefix) :]
        state[prefix + module.own_keys.get(local, local)] = value


def _report_timm_names(module: TimmBackbone, incompatible: Any) -> None:
    """load_state_dict post-hook: missing keys under timm's names, as the file would have them."""
    prefix = getattr(module, "_load_prefix", "")
    keys = incompatible.missing_keys
    for index, key in enumerate(keys):
        if key.startswith(prefix):
            local = key[len(prefix) :]
            keys[index] = prefix + module.timm_keys.get(local, local)


# -- the backbone ---------------------------------------------------------------------------
class TimmBackbone(nn.Module):
    """A timm model with `features_only` as a backbone.

    `forward(images[N,3,H,W]) -> features[N, out_channels, H/stride, W/stride]`, the last level;
    `forward_levels(images)` returns every level of `out_indices` (timm's `feature_info`), finest
    first, with their (channels, stride) in `levels`. `normalization` is the model's pretrained
    config (mean, std); `input_multiple` the lcm of the levels' strides.

    State-dict keys are those of `timm.create_model(model_name)` (its classification model), so a
    timm state dict loads through `toolkit.checkpoints`; `ignored_weight_prefixes` lists the keys of
    timm's model that the feature extractor drops (classifier, layers after the last level).

    pretrained: "none" or "imagenet" (timm's default pretrained weights for `model_name`, loaded by
        timm, which downloads them); a local file is loaded by the core after building.
    frozen_stages: k freezes the parameters that compute the first k levels (in module order: the
        stem and everything up to and including the k-th level's module); 0 freezes nothing.
    norm_eval: keep the BatchNorm layers of frozen parts in eval mode in `train()`.
    """

    def __init__(
        self,
        *,
        model_name: str,
        pretrained: str = "none",
        out_indices: Sequence[int] | None = None,
        frozen_stages: int = 0,
        norm_eval: bool = True,
    ) -> None:
        super().__init__()
        if pretrained not in ("none", "imagenet"):
            raise ToolkitError(
                f"TimmBackbone: pretrained must be 'none' or 'imagenet', got {pretrained!r}; load a local "
                "file through the builder (spec `pretrained: PATH`) or toolkit.checkpoints.load_pretrained"
            )
        self.model_name = model_name
        self.body = create_features(model_name, out_indices, pretrained=pretrained == "imagenet")
        info = self.body.feature_info
        #: (channels, stride) of each map `forward_levels` returns, finest first
        self.levels = FeatureInfo(zip(info.channels(), info.reduction(), strict=True))
        self.out_channels, self.stride = self.levels[-1]
        self.input_multiple = input_multiple(self.levels)
        self._level_modules = list(info.module_name())
        self._channels_last = _output_layout(self.body, model_name)
        config = resolve_data_config({}, model=self.body)
        self.normalization = (
            Normalization(tuple(config["mean"]), tuple(config["std"]))
            if len(config.get("mean", ())) == 3 and len(config.get("std", ())) == 3
            else IMAGENET_NORMALIZATION
        )
        self._timm_modules, timm_keys = timm_names(self.body, model_name)
        #: {our state-dict key: timm's}, and back (see the state-dict hooks)
        self.timm_keys = key_names(self.body, self._timm_modules, prefix="body.")
        self.own_keys = {name: key for key, name in self.timm_keys.items()}
        #: keys of timm's model the feature extractor has no place for (dropped silently on load)
        self.ignored_weight_prefixes = tuple(sorted(timm_keys - set(self.own_keys)))
        self.register_state_dict_post_hook(_save_with_timm_names)
        self.register_load_state_dict_pre_hook(_load_with_timm_names)
        self.register_load_state_dict_post_hook(_report_timm_names)
        self.norm_eval = norm_eval
        self._frozen_stages = 0
        self.set_frozen_stages(frozen_stages)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_levels(images)[-1]

    def forward_levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """timm's feature maps for `out_indices` (see `levels`), NCHW."""
        features = self.body(images)
        maps = list(features.values()) if isinstance(features, Mapping) else list(features)
        if self._channels_last:
            maps = [x.permute(0, 3, 1, 2) for x in maps]
        return maps

    # ----------------------------------------------------------------------------- freezing

    @property
    def frozen_stages(self) -> int:
        """Number of frozen levels (0..len(levels))."""
        return self._frozen_stages

    def _frozen_parameters(self) -> list[nn.Parameter]:
        """Parameters of `body`'s modules up to the end of the k-th level's module, in module order."""
        if self._frozen_stages == 0:
            return []
        level = self._level_modules[self._frozen_stages - 1]
        modules = list(self.body.named_modules())
        target = next((name for name, _ in modules if self._timm_modules.get(name) == level), None)
        if target is None:
            raise ToolkitError(
                f"timm backbone {self.model_name!r}: cannot find the module {level!r} of level "
                f"{self._frozen_stages} to freeze; use frozen_stages: 0"
            )
        end = max(i for i, (name, _) in enumerate(modules) if name == target or name.startswith(target + "."))
        return [param for _, module in modules[: end + 1] for param in module.parameters(recurse=False)]

    def _frozen_modules(self) -> list[nn.Module]:
        frozen = {id(p) for p in self._frozen_parameters()}
        return [
            m
            for m in self.body.modules()
            if isinstance(m, _BatchNorm) and any(id(p) in frozen for p in m.parameters(recurse=False))
        ]

    def set_frozen_stages(self, k: int) -> None:
        """Freeze the parameters computing the first k levels; unfreeze the rest (k=0: none frozen)."""
        if not 0 <= k <= len(self.levels):
            raise ToolkitError(
                f"timm backbone {self.model_name!r}: frozen_stages must be in 0..{len(self.levels)} "
                f"(its number of levels), got {k}"
            )
        self._frozen_stages = k
        for param in self.parameters():
            param.requires_grad_(True)
        for param in self._frozen_parameters():
            param.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> TimmBackbone:
        """Set train/eval mode; with norm_eval, BatchNorm of frozen parts stays in eval mode."""
        super().train(mode)
        if mode and self.norm_eval and self._frozen_stages:
            for module in self._frozen_modules():
                module.eval()
        return self


def _output_layout(body: nn.Module, model_name: str) -> bool:
    """True when timm's maps come channels-last (NHWC, e.g. Swin); other layouts are refused."""
    layout = getattr(body, "output_fmt", "NCHW")
    layout = str(getattr(layout, "value", layout)).upper()
    if layout not in ("NCHW", "NHWC"):
        raise ToolkitError(
            f"timm backbone: {model_name!r} gives {layout} features, not image maps; pick a model "
            "whose features_only output is NCHW or NHWC"
        )
    return layout == "NHWC"
