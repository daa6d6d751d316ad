"""Components that fail in the ways plugins do: factories that raise, objects declaring impossible
values, a dataset, an augmentation and a loss that raise while used (for tests/test_hostile_*)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

import toolkit


def _net(out_channels: Any, stride: Any, levels: Any = None) -> Any:
    from torch import nn

    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=32, padding=1))
    net.out_channels = out_channels  # type: ignore[assignment]
    net.stride = stride  # type: ignore[assignment]
    if levels is not None:
        net.levels = levels  # type: ignore[assignment]
        net.forward_levels = lambda images: [net(images)]  # type: ignore[assignment]
    return net


def raising_backbone(width: Annotated[int, Field(ge=1)] = 8) -> Any:
    """Its factory raises (a plugin's own argument check)."""
    raise ValueError(f"width must be even, got {width}")


def negative_channels() -> Any:
    """Declares out_channels=-5."""
    return _net(-5, 32)


def string_stride() -> Any:
    """Declares stride="32"."""
    return _net(8, "32")


def zero_stride_levels() -> Any:
    """Declares a feature level with stride 0."""
    return _net(8, 32, levels=[(8, 0)])


def raising_head(in_channels: int, stride: int, num_classes: int) -> Any:
    """Its factory raises a RuntimeError."""
    raise RuntimeError("cannot build the head: the neck needs at least 16 channels")


def rotation(degrees: float = 10.0) -> Any:
    """torchvision's RandomRotation with unchecked arguments (negative degrees: torchvision raises)."""
    from torchvision.transforms import v2

    return v2.RandomRotation(degrees)


def raising_augmentation() -> Any:
    """An augmentation that raises when applied."""
    from torchvision.transforms import v2

    class Broken(v2.Transform):
        def forward(self, *inputs: Any) -> Any:
            raise IndexError("list index out of range (augmentation bug)")

    return Broken()


def raising_dataset(length: Annotated[int, Field(ge=1)] = 8, on_bad_sample: str = "error") -> Any:
    """A classification dataset whose samples raise KeyError (a plugin bug)."""

    class Raising:
        task = "classification"
        class_names = ("absent", "present")

        def __len__(self) -> int:
            return length

        def __getitem__(self, index: int) -> Any:
            raise KeyError(f"annotation {index}")

    return Raising()


def raising_loss() -> Any:
    """A loss whose forward raises (outputs it does not understand)."""
    import torch

    class Raising(torch.nn.Module):
        def forward(self, outputs: dict, targets: dict) -> dict:
            raise RuntimeError("shape mismatch: expected logits of shape [N, 3]")

    return Raising()


@toolkit.hookimpl
def toolkit_register_backbones(registry: toolkit.Registry) -> None:
    registry.register("raising_backbone", raising_backbone)
    registry.register("negative_channels", negative_channels)
    registry.register("string_stride", string_stride)
    registry.register("zero_stride_levels", zero_stride_levels)


@toolkit.hookimpl
def toolkit_register_heads(registry: toolkit.Registry) -> None:
    registry.register("raising_head", raising_head)


@toolkit.hookimpl
def toolkit_register_augmentations(registry: toolkit.Registry) -> None:
    registry.register("rotation", rotation)
    registry.register("raising_augmentation", raising_augmentation)


@toolkit.hookimpl
def toolkit_register_datasets(registry: toolkit.Registry) -> None:
    registry.register("raising_dataset", raising_dataset)


@toolkit.hookimpl
def toolkit_register_losses(registry: toolkit.Registry) -> None:
    registry.register("raising_loss", raising_loss)
