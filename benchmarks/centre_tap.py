"""Training step of the ResNet-18 classifier on 32 x 32 images (the fine-tuning demo's setting) with
the centre-tap convolutions (plugins/backbones/centre_tap.py) against the same model with plain
`nn.Conv2d`, measured in one run, alternating, best of N rounds. Prints JSON with the ratio.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
from torch import nn

from toolkit_plugins.backbones.centre_tap import use_plain_conv
from toolkit_plugins.backbones.resnet_modules import ResNetBackbone


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, classes: int) -> None:
        super().__init__()
        self.backbone, self.fc = backbone, nn.Linear(512, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(images).amax(dim=(2, 3)))


def step_seconds(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    centre = Classifier(ResNetBackbone(18), 16)
    plain = copy.deepcopy(centre)
    use_plain_conv(plain)
    images = torch.randn(args.batch, 3, args.size, args.size)
    labels = torch.randint(0, 16, (args.batch,))
    step_seconds(centre, images, labels, 1), step_seconds(plain, images, labels, 1)  # warm-up
    centre_times, plain_times = [], []
    for _ in range(args.rounds):
        centre_times.append(step_seconds(centre, images, labels, args.steps))
        plain_times.append(step_seconds(plain, images, labels, args.steps))
    best_centre, best_plain = min(centre_times), min(plain_times)
    print(
        json.dumps(
            {
                "benchmark": "centre_tap",
                "setting": f"ResNet-18 classifier, batch {args.batch}, {args.size}x{args.size}, "
                f"AdamW, {args.threads} threads",
                "plain_step_ms": round(best_plain * 1000, 1),
                "centre_tap_step_ms": round(best_centre * 1000, 1),
                "speedup": round(best_plain / best_centre, 2),
                "images_per_s": {
                    "plain": round(args.batch / best_plain, 1),
                    "centre_tap": round(args.batch / best_centre, 1),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
