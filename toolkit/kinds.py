"""The component kinds, once: each kind's hook, the arguments the builder injects, its protocol and
optional parts (`toolkit.contracts`), whether its objects are torch modules, and its value checks.

Every other module (hook specs, registries, the plugin manager, the builder's checks, spec error
messages, docs tests) reads this table and names a kind by its row (`kinds.HEAD.name`); adding a
kind is one row here plus its hook in `toolkit.hookspecs`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from toolkit import contracts as c
from toolkit.errors import PluginError
from toolkit.guard import label_component

if TYPE_CHECKING:
    from toolkit.registry import PluginInfo


@dataclass(frozen=True)
class Kind:
    """A component kind.

    - `hook`: the hook that registers it; `injected`: each argument the builder offers a factory
      (never a spec parameter) and where its value comes from, for error messages;
    - `protocol`: what its built objects must satisfy; `optional`: the optional parts code asks for
      with `isinstance`; `module`: its objects must be `torch.nn.Module`s;
    - `values`: what is wrong with the values a built object declares (types and ranges);
    - `guarded`: its objects are plain objects whose methods the core calls: the builder guards them
      (`toolkit.guard.guard`), so their exceptions name the component wherever they are called.
    """

    name: str
    hook: str
    protocol: type
    injected: Mapping[str, str] = field(default_factory=dict)
    optional: tuple[type, ...] = ()
    module: bool = False
    values: Callable[[Any], list[str]] = lambda obj: []
    guarded: bool = False


TASK = Kind(
    "task",
    "toolkit_register_tasks",
    c.Task,
    optional=(
        c.ComparesOutputs,
        c.WritesResultFiles,
        c.ExportsDatasets,
        c.CountsDatasets,
        c.HasAttackObjectives,
        c.JudgesAttacks,
    ),
    values=c.task_value_problems,
    guarded=True,
)
BACKBONE = Kind(
    "backbone",
    "toolkit_register_backbones",
    c.Backbone,
    optional=(c.HasLevels, c.Freezable, c.HasNormalization, c.IgnoresWeightKeys, c.HasInputMultiple),
    module=True,
    values=c.backbone_value_problems,
)
HEAD = Kind(
    "head",
    "toolkit_register_heads",
    c.Head,
    {
        "in_channels": "the backbone's out_channels",
        "stride": "the backbone's stride",
        "num_classes": "model.class_names",
        "levels": "the backbone's levels",
    },
    optional=(c.HasTargetEncoder, c.HasDefaultLoss, c.UsesLevels, c.HasInputMultiple),
    module=True,
    values=c.head_value_problems,
)
LOSS = Kind("loss", "toolkit_register_losses", c.Loss, {"num_classes": "model.class_names"})
AUGMENTATION = Kind(
    "augmentation",
    "toolkit_register_augmentations",
    c.Augmentation,
    {"input_size": "model.input_size"},
    optional=(c.NeedsFloat,),
)
ATTACK = Kind(
    "attack",
    "toolkit_register_attacks",
    c.Attack,
    optional=(c.AimsAtObjective, c.FitsOnData, c.HasPatch),
)
DATASET = Kind(
    "dataset",
    "toolkit_register_datasets",
    c.Dataset,
    {"on_bad_sample": "data.on_bad_sample"},
    optional=(c.CountsBoxQuirks, c.HasGroundTruth, c.HasCategoryIds, c.HasLabels),
    values=c.dataset_value_problems,
)
LOGGER = Kind(
    "logger",
    "toolkit_register_loggers",
    c.RunLogger,
    optional=(c.WritesRunFiles,),
    values=c.logger_value_problems,
)

#: every kind, in the order hooks are called (tasks first: heads name them)
KIND_TABLE: tuple[Kind, ...] = (TASK, BACKBONE, HEAD, LOSS, AUGMENTATION, ATTACK, DATASET, LOGGER)
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


def check_component(kind: Kind, name: str, obj: Any, plugin: PluginInfo) -> None:
    """Raise PluginError naming the member, the component and its plugin if `obj` breaks its kind's
    contract (not a module where one is needed, a missing member, or a member whose value has the
    wrong type or range, e.g. a negative `out_channels`); then label `obj` for later messages
    (`guard.component_label`)."""
    problems: list[str] = []
    if kind.module:
        from torch import nn

        if not isinstance(obj, nn.Module):
            problems.append(f"is a {type(obj).__name__}, not a torch.nn.Module")
    missing = c.missing_members(obj, kind.protocol)
    if missing:
        problems.append(f"lacks {', '.join(missing)}")
    if not problems:
        problems = [f"has {problem}" for problem in kind.values(obj)]
    if problems:
        raise PluginError(
            f"{kind.name} {name!r} from {plugin.describe()} breaks the {kind.name} contract "
            f"(toolkit.contracts.{kind.protocol.__name__}): the object it built "
            f"{' and '.join(problems)}; see docs/plugins.md, section 4"
        )
    label_component(obj, kind.name, name, plugin)
