"""FGSM and PGD on the model's task objective; images in [0, 1] in and out, the model untouched."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from toolkit.attacks.objectives import attack_mode, input_gradient, resolve_objective


class FGSM:
    """x + eps * sign(grad of the objective), clipped to [0, 1]."""

    def __init__(self, *, eps: float, objective: str | None = None, target_class: str | None = None) -> None:
        self.eps = eps
        self.objective = objective
        self.target_class = target_class

    def __repr__(self) -> str:
        return f"FGSM(eps={self.eps:.5g})"

    def __call__(self, model: Any, images: Tensor, targets: Mapping[str, Tensor]) -> Tensor:
        objective, target = resolve_objective(model, self.objective, self.target_class)
        with attack_mode(model):
            gradient, _ = input_gradient(model, images, targets, objective=objective, target_class=target)
        return (images.detach() + self.eps * gradient.sign()).clamp(0.0, 1.0)


def _per_image_norm(x: Tensor) -> Tensor:
    return x.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))


class PGD:
    """Projected gradient ascent: `steps` steps of `step_size` (sign steps for L-inf, normalized
    gradient steps for L2), each followed by projection onto the eps ball around the input and
    onto [0, 1]."""

    def __init__(
        self,
        *,
        eps: float,
        steps: int = 10,
        step_size: float | None = None,
        norm: str = "linf",
        random_start: bool = True,
        seed: int = 0,
        objective: str | None = None,
        target_class: str | None = None,
    ) -> None:
        if norm not in ("linf", "l2"):
            raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
        self.eps = eps
        self.steps = steps
        self.step_size = step_size if step_size is not None else 2.5 * eps / steps
        self.norm = norm
        self.random_start = random_start
        self.seed = seed
        self.objective = objective
        self.target_class = target_class
        self._calls = 0

    def __repr__(self) -> str:
        return (
            f"PGD(eps={self.eps:.5g}, steps={self.steps}, step_size={self.step_size:.5g}, norm={self.norm})"
        )

    def project(self, adversarial: Tensor, images: Tensor) -> Tensor:
        """Onto the eps ball around `images`, then onto [0, 1] (which keeps it in the ball)."""
        delta = adversarial - images
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        else:
            delta = delta * (self.eps / _per_image_norm(delta)).clamp(max=1.0)
        return (images + delta).clamp(0.0, 1.0)

    def _start(self, images: Tensor) -> Tensor:
        if not self.random_start or self.eps == 0:
            return images.clone()
        generator = torch.Generator(device="cpu").manual_seed(self.seed + self._calls)
        self._calls += 1
        if self.norm == "linf":
            noise = torch.rand(images.shape, generator=generator) * 2 - 1
            delta = noise * self.eps
        else:  # uniform in the L2 ball: a random direction, radius eps * u^(1/d)
            direction = torch.randn(images.shape, generator=generator)
            direction = direction / _per_image_norm(direction)
            d = images[0].numel()
            radius = torch.rand((images.shape[0],), generator=generator).pow(1.0 / d) * self.eps
            delta = direction * radius.view(-1, *([1] * (images.dim() - 1)))
        return self.project(images + delta.to(images.device, images.dtype), images)

    def __call__(self, model: Any, images: Tensor, targets: Mapping[str, Tensor]) -> Tensor:
        objective, target = resolve_objective(model, self.objective, self.target_class)
        images = images.detach()
        adversarial = self._start(images)
        with attack_mode(model):
            for _ in range(self.steps):
                gradient, _ = input_gradient(
                    model, adversarial, targets, objective=objective, target_class=target
                )
                step = gradient.sign() if self.norm == "linf" else gradient / _per_image_norm(gradient)
                adversarial = self.project(adversarial + self.step_size * step, images)
        return adversarial.detach()
