"""ResNet-18/50 trunks built from torchvision, with ImageNet weights and stage freezing.

Imported only when a model is built (see `resnet.py`), so torch stays out of plugin listing.
Local state-dict files are loaded by the core (`toolkit.checkpoints`), as for every backbone.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torchvision
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from toolkit.checkpoints import download_state_dict, load_weights
from toolkit.contracts import IMAGENET_NORMALIZATION, FeatureInfo, Normalization
from toolkit.errors import ToolkitError
from toolkit_plugins.backbones.centre_tap import use_centre_tap

_DEPTHS: dict[int, tuple[Any, Any, int]] = {
    18: (torchvision.models.resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1, 512),
    50: (torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V2, 2048),
}
_STAGES = ("layer1", "layer2", "layer3", "layer4")
_STAGE_PLANES = (64, 128, 256, 512)


def scaled_channels(channels: int, width: float) -> int:
    """`channels * width` rounded to a multiple of 8 (at least 8): what a `width` ResNet uses."""
    return max(8, round(channels * width / 8) * 8)


def _narrow(trunk: torchvision.models.ResNet, width: float, zero_init_residual: bool) -> None:
    """Rebuild `trunk`'s stem and stages with every stage's planes scaled by `width`.

    Uses torchvision's own `_make_layer` (same blocks, same names) and its initialisation, so a
    narrow trunk differs from the standard one only in its channel counts.
    """
    block = type(trunk.layer1[0])
    depths = [len(getattr(trunk, name)) for name in _STAGES]
    trunk.inplanes = scaled_channels(64, width)
    trunk.dilation = 1
    trunk.conv1 = nn.Conv2d(3, trunk.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
    trunk.bn1 = nn.BatchNorm2d(trunk.inplanes)
    for index, (name, planes, depth) in enumerate(zip(_STAGES, _STAGE_PLANES, depths, strict=True)):
        stage = trunk._make_layer(block, scaled_channels(planes, width), depth, stride=1 if index == 0 else 2)
        setattr(trunk, name, stage)
    trunk.fc = nn.Identity()
    for module in trunk.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    for module in trunk.modules() if zero_init_residual else ():  # after the loop above resets BN
        if isinstance(module, torchvision.models.resnet.BasicBlock):
            nn.init.zeros_(module.bn2.weight)
        elif isinstance(module, torchvision.models.resnet.Bottleneck):
            nn.init.zeros_(module.bn3.weight)


class ResNetBackbone(nn.Module):
    """ResNet-18 or ResNet-50 trunk (torchvision layout, no avgpool/fc).

    `forward(images[N, 3, H, W]) -> features[N, out_channels, H/stride, W/stride]` (stride 32 or 16).
    `forward_levels(images)` returns the outputs of the four stages, finest first, with the
    (channels, stride) of each in `levels`; the last is `forward`'s map (for skip connections).
    Children keep torchvision's names (conv1, bn1, relu, maxpool, layer1..layer4), so a
    torchvision state dict loads as is: `toolkit.checkpoints.load_pretrained(backbone, path,
    component="resnet50", ignore_prefixes=ResNetBackbone.ignored_weight_prefixes)` (what the
    builder does for a spec's `pretrained: PATH`). Inputs are expected normalized with
    `normalization` (ImageNet's), with sides multiples of `input_multiple` (= `stride`).

    pretrained: "none" or "imagenet" (torchvision weights, downloaded); a path raises
        `ToolkitError` (files are the core's job, see above).
    frozen_stages: 0 nothing frozen; k in 1..4 the stem (conv1, bn1) and layer1..layer{k}
        get requires_grad False (see `set_frozen_stages`).
    norm_eval: keep the BatchNorm layers of frozen parts in eval mode in `train()`, so their
        running statistics do not move.
    zero_init_residual: start each residual branch's last BatchNorm at zero (Goyal et al.), so
        every block begins as the identity: faster, steadier training from scratch; pretrained
        weights overwrite it.
    last_stride: 2 (torchvision) or 1: stage 4 does not downsample, so features come at stride
        16 (the re-ID "last stride" trick): finer maps for small inputs, more compute in stage 4.
    width: channel multiplier of every stage (1: torchvision's ResNet; 0.5: half the channels,
        about a quarter of the compute); each count is rounded to a multiple of 8. ImageNet
        weights exist for width 1 only.
    """

    #: key prefixes of pretrained files that have no place in the trunk (the classifier)
    ignored_weight_prefixes: tuple[str, ...] = ("fc.",)
    #: input statistics of torchvision's weights, applied by the model before the trunk
    normalization: Normalization = IMAGENET_NORMALIZATION

    def __init__(
        self,
        depth: int,
        *,
        pretrained: Literal["none", "imagenet"] = "none",
        frozen_stages: int = 0,
        norm_eval: bool = True,
        last_stride: int = 2,
        zero_init_residual: bool = False,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        if depth not in _DEPTHS:
            raise ToolkitError(f"ResNet depth must be one of {sorted(_DEPTHS)}, got {depth}")
        if width <= 0:
            raise ToolkitError(f"ResNet width must be > 0, got {width}")
        if width != 1.0 and pretrained == "imagenet":
            raise ToolkitError(
                f"resnet{depth}: ImageNet weights exist for width 1 only, got width {width}; "
                "set pretrained: none or width: 1"
            )
        builder, imagenet_weights, full_channels = _DEPTHS[depth]
        expansion = full_channels // 512  # 1 for basic blocks, 4 for bottlenecks
        self.out_channels = scaled_channels(512, width) * expansion
        self.depth = depth
        self.width = width
        if pretrained not in ("none", "imagenet"):
            raise ToolkitError(
                f"ResNetBackbone: pretrained must be 'none' or 'imagenet', got {pretrained!r}; load a "
                "local state-dict file through the builder (spec `pretrained: PATH`) or "
                f"toolkit.checkpoints.load_pretrained(backbone, path, component='resnet{depth}', "
                "ignore_prefixes=ResNetBackbone.ignored_weight_prefixes)"
            )
        if last_stride not in (1, 2):
            raise ToolkitError(f"last_stride must be 1 or 2, got {last_stride}")
        self.stride = 32 if last_stride == 2 else 16
        self.input_multiple = self.stride  # the largest stride used: every stage sees whole cells
        #: (channels, stride) of each map `forward_levels` returns, finest first
        self.levels = FeatureInfo(
            [
                (scaled_channels(64, width) * expansion, 4),
                (scaled_channels(128, width) * expansion, 8),
                (scaled_channels(256, width) * expansion, 16),
                (self.out_channels, self.stride),
            ]
        )
        self.norm_eval = norm_eval
        trunk = builder(weights=None, zero_init_residual=zero_init_residual)
        if width != 1.0:
            _narrow(trunk, width, zero_init_residual)
        if last_stride == 1:  # stage 4 keeps stage 3's resolution; weights keep their shapes
            for module in trunk.layer4[0].modules():
                if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
                    module.stride = (1, 1)
        use_centre_tap(trunk)  # stage 4 on small images: see centre_tap.py
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
            state = download_state_dict(imagenet_weights, component=f"resnet{depth}")
            load_weights(
                self,
                state,
                source=f"torchvision {imagenet_weights}",
                component=f"resnet{depth}",
                ignore_prefixes=self.ignored_weight_prefixes,
            )
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
