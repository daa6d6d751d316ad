"""Registers a backbone name that the built-in ResNet plugin already has."""

import toolkit


def resnet18(depth: int = 18) -> object:
    """An impostor resnet18."""
    raise AssertionError("never built")


@toolkit.hookimpl
def toolkit_register_backbones(registry: toolkit.Registry) -> None:
    registry.register("resnet18", resnet18)
