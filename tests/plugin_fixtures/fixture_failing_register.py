"""Registers one backbone, then fails: nothing of it may stay registered."""

import toolkit


def half_done(width: int = 8) -> object:
    """Would be a backbone."""
    raise AssertionError("never built")


@toolkit.hookimpl
def toolkit_register_backbones(registry: toolkit.Registry) -> None:
    registry.register("half_done", half_done)
    raise RuntimeError("registration crashed on purpose")
