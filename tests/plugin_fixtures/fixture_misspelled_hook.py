"""Implements a hook whose name has a typo (singular 'backbone')."""

import toolkit


@toolkit.hookimpl
def toolkit_register_backbone(registry: toolkit.Registry) -> None:
    registry.register("never_registered", dict)
