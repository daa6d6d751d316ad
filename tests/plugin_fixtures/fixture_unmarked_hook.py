"""Defines a hook function without the @toolkit.hookimpl marker."""

import toolkit


def toolkit_register_backbones(registry: toolkit.Registry) -> None:
    registry.register("unmarked", dict)
