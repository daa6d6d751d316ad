"""ResNet-18/50 trunks built from torchvision, with weight loading and stage freezing.

Imported only when a model is built (see `resnet.py`), so torch stays out of plugin listing.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from toolkit.errors import ToolkitError

_DEPTHS: dict[int, tuple[Any, Any, int]] = {
    18: (torchvision.models.resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1, 512),
    50: (torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V2, 2048),
}
_STAGES = ("layer1", "layer2", "layer3", "layer4")
_SHOWN_KEYS = 5


def _key_list(keys: Iterable[str]) -> str:
    """`'a', 'b', ... (N in all)`: the first few keys and the count."""
    keys = sorted(keys)
    shown = ", ".join(repr(k) for k in keys[:_SHOWN_KEYS])
    more = ", ..." if len(keys) > _SHOWN_KEYS else ""
    return f"{shown}{more} ({len(keys)} in all)"


class ResNetBackbone(nn.Module):
    """ResNet-18 or ResNet-50 trunk (torchvision layout, no avgpool/fc).

    `forward(images[N, 3, H, W]) -> features[N, out_channels, H/stride, W/stride]` (stride 32 or 16).
    `forward_levels(images)` returns the outputs of the four stages, finest first, with the
    (channels, stride) of each in `levels`; the last is `forward`'s map (for skip connections).
    Children keep torchvision's names (conv1, bn1, relu, maxpool, layer1..layer4), so a
    torchvision state dict loads as is.

    pretrained: "none", "imagenet" (torchvision weights, downloaded) or the path of a local
        state-dict file: a plain state dict, a checkpoint holding it under "model" or
        "state_dict", keys prefixed "module." (DDP) and/or "backbone." (a whole toolkit model;
        only those keys are kept). "fc.*" keys are ignored; other missing or unexpected keys
        are reported with `warnings.warn`; no matching key, a shape mismatch or an unreadable
        file raise `ToolkitError`.
    frozen_stages: 0 nothing frozen; k in 1..4 the stem (conv1, bn1) and layer1..layer{k}
        get requires_grad False (see `set_frozen_stages`).
    norm_eval: keep the BatchNorm layers of frozen parts in eval mode in `train()`, so their
        running statistics do not move.
    zero_init_residual: start each residual branch's last BatchNorm at zero (Goyal et al.), so
        every block begins as the identity: faster, steadier training from scratch; pretrained
        weights overwrite it.
    last_stride: 2 (torchvision) or 1: stage 4 does not downsample, so features come at stride
        16 (the re-ID "last stride" trick): finer maps for small inputs, more compute in stage 4.
    """

    def __init__(
        self,
        depth: int,
        *,
        pretrained: str = "none",
        frozen_stages: int = 0,
        norm_eval: bool = True,
        last_stride: int = 2,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if depth not in _DEPTHS:
            raise ToolkitError(f"ResNet depth must be one of {sorted(_DEPTHS)}, got {depth}")
        builder, imagenet_weights, self.out_channels = _DEPTHS[depth]
        self.depth = depth
        if last_stride not in (1, 2):
            raise ToolkitError(f"last_stride must be 1 or 2, got {last_stride}")
        self.stride = 32 if last_stride == 2 else 16
        expansion = self.out_channels // 512  # 1 for basic blocks, 4 for bottlenecks
        #: (channels, stride) of each map `forward_levels` returns, finest first
        self.levels: tuple[tuple[int, int], ...] = (
            (64 * expansion, 4),
            (128 * expansion, 8),
            (256 * expansion, 16),
            (self.out_channels, self.stride),
        )
        self.norm_eval = norm_eval
        trunk = builder(weights=None, zero_init_residual=zero_init_residual)
        if last_stride == 1:  # stage 4 keeps stage 3's resolution; weights keep their shapes
            for module in trunk.layer4[0].modules():
                if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
                    module.stride = (1, 1)
        self.conv1 = trunk.conv1
        self.bn1 = trunk.bn1
        self.relu = trunk.relu
        self.maxpool = trunk.maxpool
        self.layer1 = trunk.layer1
        self.layer2 = trunk.layer2
        self.layer3 = trunk.layer3
        self.layer4 = trunk.layer4
        self._frozen_stages = 0
        if pretrained == "imagenet":
            state = imagenet_weights.get_state_dict(progress=True)
            self._load_state(state, f"torchvision {imagenet_weights}")
        elif pretrained != "none":
            self.load_pretrained(pretrained)
        self.set_frozen_stages(frozen_stages)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_levels(images)[-1]

    def forward_levels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of layer1..layer4 (see `levels` for their channels and strides)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        outputs = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            outputs.append(x)
        return outputs

    # ----------------------------------------------------------------------------- freezing

    @property
    def frozen_stages(self) -> int:
        """Number of frozen stages (0..4); the stem is frozen whenever it is >= 1."""
        return self._frozen_stages

    def _frozen_modules(self) -> list[nn.Module]:
        if self._frozen_stages == 0:
            return []
        stages = [getattr(self, name) for name in _STAGES[: self._frozen_stages]]
        return [self.conv1, self.bn1, *stages]

    def set_frozen_stages(self, k: int) -> None:
        """Freeze the stem and layer1..layer{k}; unfreeze everything else (k=0: nothing frozen).

        Re-applies the train/eval state so norm_eval follows the new frozen set.
        """
        if not 0 <= k <= len(_STAGES):
            raise ToolkitError(f"frozen_stages must be in 0..{len(_STAGES)}, got {k}")
        self._frozen_stages = k
        for param in self.parameters():
            param.requires_grad_(True)
        for module in self._frozen_modules():
            for param in module.parameters():
                param.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> ResNetBackbone:
        """Set train/eval mode; with norm_eval, BatchNorm of frozen parts stays in eval mode."""
        super().train(mode)
        if mode and self.norm_eval:
            for module in self._frozen_modules():
                for sub in module.modules():
                    if isinstance(sub, _BatchNorm):
                        sub.eval()
        return self

    # ------------------------------------------------------------------------------ loading

    def load_pretrained(self, path: str | Path) -> None:
        """Load a local state-dict file (see the class docstring for the accepted layouts)."""
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ToolkitError(
                f"cannot read pretrained weights {str(path)!r} as a PyTorch state dict "
                f"({type(exc).__name__}: {exc}); pass a file written with torch.save(state_dict)"
            ) from exc
        self._load_state(self._unwrap(obj, str(path)), str(path))

    @staticmethod
    def _unwrap(obj: Any, source: str) -> dict[str, torch.Tensor]:
        """The state dict inside `obj`: follow "model"/"state_dict", strip "module."/"backbone."."""
        while isinstance(obj, Mapping):
            inner = next((obj[k] for k in ("model", "state_dict") if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
        if not isinstance(obj, Mapping):
            raise ToolkitError(
                f"pretrained weights {source!r} hold a {type(obj).__name__}, not a state dict; "
                "save model.state_dict() (or a checkpoint dict with a 'model' key)"
            )
        state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if state and all(k.startswith("module.") for k in state):
            state = {k[len("module.") :]: v for k, v in state.items()}
        if any(k.startswith("backbone.") for k in state):
            state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
        return state

    def _load_state(self, state: Mapping[str, torch.Tensor], source: str) -> None:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        own = self.state_dict()
        matched = own.keys() & state.keys()
        if not matched:
            got = _key_list(state) if state else "no tensors at all"
            raise ToolkitError(
                f"pretrained weights {source!r}: no key matches a resnet{self.depth} backbone "
                f"(got {got}; expected keys like 'conv1.weight', 'layer1.0.conv1.weight'); is "
                f"this a resnet{self.depth} state dict? Whole-model checkpoints need the "
                "'backbone.' prefix"
            )
        mismatched = sorted(k for k in matched if state[k].shape != own[k].shape)
        if mismatched:
            details = ", ".join(
                f"{k!r} file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                for k in mismatched[:_SHOWN_KEYS]
            )
            more = f" and {len(mismatched) - _SHOWN_KEYS} more" if len(mismatched) > _SHOWN_KEYS else ""
            raise ToolkitError(
                f"pretrained weights {source!r} do not fit resnet{self.depth}: shape mismatch for "
                f"{details}{more} ({len(mismatched)} key(s)); is this a resnet{self.depth} state "
                "dict? Use the backbone the weights were trained with"
            )
        result = self.load_state_dict(state, strict=False)
        if result.missing_keys:
            warnings.warn(
                f"pretrained weights {source!r}: {len(result.missing_keys)} resnet{self.depth} "
                f"key(s) missing, left at their initial values: {_key_list(result.missing_keys)}",
                UserWarning,
                stacklevel=3,
            )
        if result.unexpected_keys:
            warnings.warn(
                f"pretrained weights {source!r}: {len(result.unexpected_keys)} unexpected key(s) "
                f"ignored: {_key_list(result.unexpected_keys)}",
                UserWarning,
                stacklevel=3,
            )
