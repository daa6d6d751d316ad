"""CenterNet head ("objects as points"): upsampling neck, three branches, top-K peak decode."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.errors import ToolkitError
from toolkit_plugins.heads.centernet_targets import CenterNetTargetEncoder

HEATMAP_PRIOR_BIAS = -2.19  # sigmoid(-2.19) ~ 0.1: the focal-loss prior of the CenterNet paper


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _separable_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """MobileNet's 3x3 block: depthwise 3x3 conv, BN, ReLU, then pointwise 1x1 conv, BN, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _deconv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """x2 upsampling of the paper's neck: 4x4 stride-2 transposed conv, BN, ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _skip_levels(stride: int, stages: int, levels: Sequence[tuple[int, int]] | None) -> tuple[int, ...]:
    """For each neck stage, the index of the backbone level at that stage's output stride.

    `levels` are the backbone's (channels, stride) pairs, finest first; the last one (the map the
    neck starts from) is never a skip source.
    """
    if not levels:
        raise ToolkitError(
            "centernet: skips need a backbone that provides feature levels (a `levels` attribute and "
            "`forward_levels`), and this backbone provides none; set skips: false or use a backbone "
            "with levels (e.g. resnet18)"
        )
    by_stride = {level_stride: index for index, (_, level_stride) in enumerate(levels[:-1])}
    chosen = []
    for stage in range(1, stages + 1):
        stage_stride = stride // 2**stage
        if stage_stride not in by_stride:
            offered = ", ".join(str(level_stride) for _, level_stride in levels[:-1]) or "none"
            raise ToolkitError(
                f"centernet: skips need a backbone level at stride {stage_stride} for neck stage {stage}, "
                f"but the backbone offers strides {offered}; use fewer neck_channels or set skips: false"
            )
        chosen.append(by_stride[stage_stride])
    return tuple(chosen)


def _branch(in_channels: int, head_conv: int, out_channels: int, *, separable: bool) -> nn.Sequential:
    """3x3 conv (depthwise + pointwise when `separable`), ReLU, 1x1 conv to the outputs."""
    if separable:
        spatial: list[nn.Module] = [
            nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, head_conv, kernel_size=1, bias=True),
        ]
    else:
        spatial = [nn.Conv2d(in_channels, head_conv, kernel_size=3, padding=1, bias=True)]
    return nn.Sequential(*spatial, nn.ReLU(inplace=True), nn.Conv2d(head_conv, out_channels, kernel_size=1))


class CenterNetHead(nn.Module):
    """CenterNet detection head on a single feature map.

    `forward(features[N, in_channels, h_feat, w_feat])` returns, at
    `output_stride = stride // 2**len(neck_channels)` (h = h_feat * 2**len(neck_channels)):

    - "heatmap": class logits [N, num_classes, h, w] (sigmoid gives the centre probability);
    - "size": [N, 2, h, w], channel 0 = box width w, channel 1 = box height h, both in
      output-stride cells;
    - "offset": [N, 2, h, w], channel 0 = dx, channel 1 = dy, the sub-cell offset of the box
      centre: an object peaking at cell (x, y) has its centre at (x + dx, y + dy) cells.

    Box in input pixels = (cx - w/2, cy - h/2, cx + w/2, cy + h/2) * output_stride, clamped
    to [0, W_in] x [0, H_in] with W_in = w * output_stride, H_in = h * output_stride. The
    target encoder must use these same conventions.

    Neck: with `skips` false (the paper's), one 4x4 stride-2 deconvolution + BN + ReLU per entry
    of `neck_channels`, from the backbone's last map. With `skips` true (U-Net / FPN style; needs the
    backbone's `levels`, and `uses_levels` makes the model pass all of them): a 1x1 conv reduces
    the last map to `neck_channels[0]`, then each stage upsamples x2 (nearest), adds the backbone
    level of that stride through a 3x3 conv, and applies a 3x3 conv to `neck_channels[stage]`
    channels: finer maps reach the branches, which helps small objects and speeds up training.
    With `separable`, every 3x3 conv of the skip neck and of the branches is depthwise-separable
    (a depthwise 3x3 then a pointwise 1x1, as in MobileNet): the light head of the light recipes.

    `decode(outputs)` returns "boxes" float [N, K, 4] (xyxy, input pixels), "scores" [N, K]
    sorted descending and "labels" int64 [N, K], K = min(max_detections, C * h * w); peaks are
    cells equal to the 3x3 max of the sigmoid heatmap. Decode uses only traceable tensor ops.

    `target_encoder(input_size)` returns the matching `CenterNetTargetEncoder` (`max_objects`
    target slots per image, gaussian radius from `min_overlap`, dense box targets over `box_region`).
    """

    task = "detection"
    default_loss: dict = {"type": "centernet"}  # train.loss when the spec sets none

    def __init__(
        self,
        in_channels: int,
        stride: int,
        num_classes: int,
        *,
        neck_channels: tuple[int, ...] = (256, 128, 64),
        head_conv: int = 64,
        max_detections: int = 100,
        max_objects: int = 128,
        min_overlap: float = 0.7,
        box_region: float = 0.0,
        skips: bool = False,
        separable: bool = False,
        levels: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        super().__init__()
        upsampling = 2 ** len(neck_channels)
        if stride % upsampling != 0:
            raise ToolkitError(
                f"centernet: backbone stride {stride} is not divisible by {upsampling} "
                f"(2 ** {len(neck_channels)} neck stages); use fewer neck_channels"
            )
        #: the model feeds `forward` the backbone's levels (finest first) instead of its last map
        self.uses_levels = skips
        self.skip_levels = _skip_levels(stride, len(neck_channels), levels) if skips else ()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.max_detections = max_detections
        self.max_objects = max_objects
        self.min_overlap = min_overlap
        self.box_region = box_region
        self.output_stride = stride // upsampling
        self.neck = nn.ModuleList()
        self.laterals = nn.ModuleList()
        channels = in_channels
        conv3x3 = _separable_bn_relu if separable else _conv_bn_relu
        if skips:  # FPN-style: reduce, then (upsample + lateral, 3x3 conv) per stage
            self.reduce = _conv_bn_relu(in_channels, neck_channels[0], kernel_size=1)
            channels = neck_channels[0]
        for stage, out in enumerate(neck_channels):
            if skips:
                level_channels = levels[self.skip_levels[stage]][0]  # type: ignore[index]
                self.laterals.append(conv3x3(level_channels, channels))
                self.neck.append(conv3x3(channels, out))
            else:
                self.neck.append(_deconv_bn_relu(channels, out))
            channels = out
        self.out_channels = channels  # channels of the neck output the branches read
        self.heatmap = _branch(channels, head_conv, num_classes, separable=separable)
        self.size = _branch(channels, head_conv, 2, separable=separable)
        self.offset = _branch(channels, head_conv, 2, separable=separable)
        nn.init.constant_(self.heatmap[-1].bias, HEATMAP_PRIOR_BIAS)
        for branch in (self.size, self.offset):
            nn.init.normal_(branch[-1].weight, std=0.001)
            nn.init.zeros_(branch[-1].bias)

    def target_encoder(self, input_size: tuple[int, int]) -> CenterNetTargetEncoder:
        """The encoder of training targets for (H, W) inputs, with this head's conventions."""
        return CenterNetTargetEncoder(
            self.num_classes,
            self.output_stride,
            input_size,
            max_objects=self.max_objects,
            min_overlap=self.min_overlap,
            box_region=self.box_region,
        )

    def forward(self, features: torch.Tensor | Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Raw outputs from the backbone's last map, or from all its levels when `uses_levels`."""
        if self.uses_levels:
            levels = list(features)  # type: ignore[arg-type]
            x = self.reduce(levels[-1])
            for merge, lateral, level in zip(self.neck, self.laterals, self.skip_levels, strict=True):
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
                x = merge(x + lateral(levels[level]))
        else:
            x = features  # type: ignore[assignment]
            for upsample in self.neck:
                x = upsample(x)
        return {"heatmap": self.heatmap(x), "size": self.size(x), "offset": self.offset(x)}

    def decode(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Top-K peaks of the heatmap as xyxy boxes in input pixels (see the class docstring)."""
        heat = outputs["heatmap"].sigmoid()
        n, c, h, w = heat.shape
        pooled = F.max_pool2d(heat, kernel_size=3, stride=1, padding=1)
        heat = heat * (pooled == heat).to(heat.dtype)
        hw = h * w
        k = min(self.max_detections, c * hw)
        scores, index = torch.topk(heat.reshape(n, -1), k, dim=1, largest=True, sorted=True)
        labels = index // hw
        pixel = index - labels * hw
        ys = pixel // w
        xs = pixel - ys * w
        gather_index = pixel.unsqueeze(1).expand(-1, 2, -1)
        size = torch.gather(outputs["size"].reshape(n, 2, -1), 2, gather_index)
        offset = torch.gather(outputs["offset"].reshape(n, 2, -1), 2, gather_index)
        cx = xs.to(heat.dtype) + offset[:, 0]
        cy = ys.to(heat.dtype) + offset[:, 1]
        half_w = size[:, 0].clamp(min=0) / 2  # an untrained size branch can be negative
        half_h = size[:, 1].clamp(min=0) / 2
        stride = self.output_stride
        x_max = torch.ones_like(cx) * (w * stride)
        y_max = torch.ones_like(cy) * (h * stride)
        x1 = torch.minimum(((cx - half_w) * stride).clamp(min=0), x_max)
        y1 = torch.minimum(((cy - half_h) * stride).clamp(min=0), y_max)
        x2 = torch.minimum(((cx + half_w) * stride).clamp(min=0), x_max)
        y2 = torch.minimum(((cy + half_h) * stride).clamp(min=0), y_max)
        boxes = torch.stack([x1, y1, x2, y2], dim=-1)
        return {"boxes": boxes, "scores": scores, "labels": labels}
