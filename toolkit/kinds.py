"""The component kinds, once: each kind's hook name and the arguments the builder injects.

Every other module (hook specs, registries, the plugin manager, spec error messages, docs tests)
reads this table; adding a kind is one row here plus its hook in `toolkit.hookspecs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class Kind:
    """A component kind: its name, the hook that registers it, and the builder-supplied arguments.

    `injected` maps each argument the builder offers a factory (never a spec parameter) to where
    its value comes from, for error messages.
    """

    name: str
    hook: str
    injected: Mapping[str, str] = field(default_factory=dict)


KIND_TABLE: tuple[Kind, ...] = (
    Kind("task", "toolkit_register_tasks"),
    Kind("backbone", "toolkit_register_backbones"),
    Kind(
        "head",
        "toolkit_register_heads",
        {
            "in_channels": "the backbone's out_channels",
            "stride": "the backbone's stride",
            "num_classes": "model.class_names",
            "levels": "the backbone's levels",
        },
    ),
    Kind("loss", "toolkit_register_losses", {"num_classes": "model.class_names"}),
    Kind("augmentation", "toolkit_register_augmentations", {"input_size": "model.input_size"}),
    Kind("attack", "toolkit_register_attacks"),
    Kind("dataset", "toolkit_register_datasets", {"on_bad_sample": "data.on_bad_sample"}),
    Kind("logger", "toolkit_register_loggers"),
)

#: kind name -> Kind, in the order hooks are called (tasks first: heads name them).
KINDS_BY_NAME: Mapping[str, Kind] = MappingProxyType({kind.name: kind for kind in KIND_TABLE})
KINDS: tuple[str, ...] = tuple(KINDS_BY_NAME)
#: kind -> hook name
HOOK_FOR_KIND: Mapping[str, str] = MappingProxyType({kind.name: kind.hook for kind in KIND_TABLE})


def injected_from(argument: str) -> str:
    """Where the builder takes an injected argument from (for "set it there" hints)."""
    for kind in KIND_TABLE:
        if argument in kind.injected:
            return kind.injected[argument]
    return "the builder"
