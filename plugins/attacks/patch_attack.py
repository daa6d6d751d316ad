"""The adversarial patch: a square of pixels pasted through a random similarity transform.

Placement: per image, a random rotation, a random side scale and a random centre that keeps the
rotated square inside the image; `torch.nn.functional.grid_sample` warps the patch and a mask of
ones; the image becomes image * (1 - mask) + patch * mask, so no pixel outside the placed square
changes. Fitting: Adam on the patch's logits (the patch is their sigmoid, always in [0, 1]),
minimizing minus the task objective over random placements on training batches (expectation over
transformations).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from itertools import cycle
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from toolkit.attacks.objectives import attack_loss, attack_mode, resolve_objective


class PatchAttack:
    """A patch covering at most `area` of an image; `fit` optimizes it, calling pastes it."""

    def __init__(
        self,
        *,
        area: float = 0.1,
        scale: tuple[float, float] = (0.8, 1.0),
        rotation: float = 20.0,
        steps: int = 300,
        lr: float = 0.1,
        seed: int = 0,
        objective: str | None = None,
        target_class: str | None = None,
    ) -> None:
        self.area = area
        self.scale = scale
        self.rotation = rotation
        self.steps = steps
        self.lr = lr
        self.seed = seed
        self.objective = objective
        self.target_class = target_class
        self.patch: Tensor | None = None  # [3,s,s] in [0, 1] once fitted
        self._generator = torch.Generator(device="cpu").manual_seed(seed)

    def __repr__(self) -> str:
        state = f"{self.side}px" if self.patch is not None else "not fitted"
        return f"PatchAttack(area={self.area}, {state})"

    @property
    def side(self) -> int:
        return 0 if self.patch is None else int(self.patch.shape[-1])

    @staticmethod
    def side_for(area: float, height: int, width: int) -> int:
        """Side in pixels of the square covering `area` of a height x width image (at least 2)."""
        return max(2, math.floor(math.sqrt(area * height * width)))

    # -- placement -----------------------------------------------------------------------------
    def transforms(self, count: int, height: int, width: int, side: int) -> Tensor:
        """Random affine matrices [count,2,3] mapping image coordinates to patch coordinates."""
        g = self._generator
        scale = self.scale[0] + (self.scale[1] - self.scale[0]) * torch.rand(count, generator=g)
        angle = (torch.rand(count, generator=g) * 2 - 1) * math.radians(self.rotation)
        half = side * scale / 2  # half side in pixels
        reach = half * (abs(torch.cos(angle)) + abs(torch.sin(angle)))  # half extent of the rotated square
        cx = (torch.rand(count, generator=g) * 2 - 1) * (width / 2 - reach).clamp(min=0)
        cy = (torch.rand(count, generator=g) * 2 - 1) * (height / 2 - reach).clamp(min=0)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # patch coords u = R(-angle) (p - c) / half, with p in pixels from the image centre and
        # p = (x_norm * W/2, y_norm * H/2)
        a11, a12 = cos * (width / 2) / half, sin * (height / 2) / half
        a21, a22 = -sin * (width / 2) / half, cos * (height / 2) / half
        b1 = -(cos * cx + sin * cy) / half
        b2 = -(-sin * cx + cos * cy) / half
        return torch.stack([torch.stack([a11, a12, b1], 1), torch.stack([a21, a22, b2], 1)], 1)

    def paste(self, images: Tensor, patch: Tensor, theta: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(images with the patch pasted, mask [N,1,H,W] of the placed square in [0, 1])."""
        n, _, height, width = images.shape
        if theta is None:
            theta = self.transforms(n, height, width, patch.shape[-1])
        theta = theta.to(images.device, images.dtype)
        grid = F.affine_grid(theta, [n, 1, height, width], align_corners=False)
        warped = F.grid_sample(patch.unsqueeze(0).expand(n, -1, -1, -1), grid, align_corners=False)
        ones = torch.ones((n, 1, *patch.shape[-2:]), device=images.device, dtype=images.dtype)
        mask = F.grid_sample(ones, grid, align_corners=False)
        return images * (1 - mask) + warped * mask, mask

    # -- fitting --------------------------------------------------------------------------------
    def fit(
        self,
        model: Any,
        batches: Iterable[tuple[Tensor, Mapping[str, Tensor]]],
        *,
        progress: Any = None,
    ) -> Tensor:
        """Optimize the patch over `steps` batches of (images in [0, 1], targets), cycling them."""
        objective, target = resolve_objective(model, self.objective, self.target_class)
        iterator: Iterator[tuple[Tensor, Mapping[str, Tensor]]] = cycle(batches)
        images, targets = next(iterator)
        side = self.side_for(self.area, images.shape[-2], images.shape[-1])
        init = torch.Generator(device="cpu").manual_seed(self.seed)
        logits = (torch.rand((3, side, side), generator=init) * 2 - 1).to(images.device).requires_grad_(True)
        optimizer = torch.optim.Adam([logits], lr=self.lr)
        with attack_mode(model), torch.enable_grad():
            for step in range(self.steps):
                if step:
                    images, targets = next(iterator)
                pasted, _ = self.paste(images, torch.sigmoid(logits))
                loss = -attack_loss(model, pasted, targets, objective=objective, target_class=target).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if progress is not None:
                    progress(step + 1, float(-loss))
        self.patch = torch.sigmoid(logits.detach())
        return self.patch

    def __call__(self, model: Any, images: Tensor, targets: Mapping[str, Tensor]) -> Tensor:
        """Paste the patch at random places; an unfitted patch is first fitted on this batch."""
        if self.patch is None:
            self.fit(model, [(images, targets)])
        assert self.patch is not None
        return self.paste(images.detach(), self.patch.to(images.device, images.dtype))[0].detach()

    def save(self, path: Path) -> Path:
        """The patch as a PNG at its size in pixels (print it at any scale)."""
        from PIL import Image

        if self.patch is None:
            raise RuntimeError("the patch is not fitted yet")
        pixels = (self.patch.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        Image.fromarray(pixels).save(path)
        return path
