"""A plugin's exceptions, labelled once: what a built component is (`label_component`), the one-line
error for an exception its code raises (`component_failure`), and `guard`, which makes every method
call of a plain component (a task, its evaluators) report its exceptions that way.

The builder labels every component it builds and guards the plain ones, so no caller wraps their
calls. Torch modules (backbones, heads, losses) are not guarded: an exception inside a forward pass
is named by `component_in_traceback`, from the labels of the modules that were running.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from toolkit.errors import ComponentError, ToolkitError, describe_exception

if TYPE_CHECKING:
    from toolkit.registry import PluginInfo

#: attribute under which the builder records what a built object is (kind, name, plugin)
_LABEL = "_toolkit_component"


def label_component(obj: Any, kind: str, name: str, plugin: PluginInfo) -> None:
    """Record `kind 'name' from plugin ...` on a built object, for messages about its failures."""
    label_as(obj, f"{kind} {name!r} from {plugin.describe()}")


def label_as(obj: Any, label: str) -> None:
    """Record `label` on an object (objects with __slots__ or frozen attributes keep their type name)."""
    with contextlib.suppress(Exception):
        setattr(obj, _LABEL, label)


def component_label(obj: Any) -> str:
    """What `label_component` recorded, else the object's type name."""
    label = getattr(obj, _LABEL, None)
    return label if isinstance(label, str) else f"{type(obj).__name__} object"


def component_in_traceback(exc: BaseException) -> str | None:
    """The label of the innermost labelled component whose method was running when `exc` was raised
    (e.g. the backbone inside a model's forward), or None."""
    found: str | None = None
    tb = exc.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        label = getattr(owner, _LABEL, None) if owner is not None else None
        if isinstance(label, str):
            found = label
        tb = tb.tb_next
    return found


def component_failure(component: Any, doing: str, exc: BaseException) -> ComponentError:
    """The one-line error for an exception raised by a component's code while `doing` something."""
    return ComponentError(
        f"{component_label(component)} failed while {doing}: {describe_exception(exc)}; check its "
        "parameters in the spec (TOOLKIT_DEBUG=1 shows the traceback)"
    )


def call_component(component: Any, doing: str, function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` (a method of a torch-module component); its exceptions become
    `component_failure` (user errors, ToolkitError, pass through)."""
    try:
        return function(*args)
    except ToolkitError:
        raise
    except Exception as exc:
        raise component_failure(component, doing, exc) from exc


# -- guarded plain components --------------------------------------------------------------------
class Guarded:
    """The base every guarded class adds (`isinstance(task, Guarded)`)."""

    __slots__ = ()


#: the guarded subclass of each plain component class
_GUARDED: dict[type, type] = {}


def guard(component: Any) -> Any:
    """`component` (a plain object, labelled) as an instance of a subclass of its class whose public
    methods turn an exception into a `component_failure` naming the component and the method; a
    `ToolkitError` passes through. It is still an instance of its class (protocol checks, including
    Python 3.12's static ones, see every member) and pickles as the plain object, guarded again when
    loaded (DataLoader workers). An object without instance attributes of its own (`__slots__`) is
    returned as it is."""
    if isinstance(component, Guarded):
        return component
    try:
        state = vars(component)
    except TypeError:
        return component
    base = type(component)
    if base not in _GUARDED:
        _GUARDED[base] = _guarded_class(base)
    guarded = object.__new__(_GUARDED[base])
    guarded.__dict__.update(state)
    return guarded


def _guarded_class(base: type) -> type:
    namespace: dict[str, Any] = {"__module__": base.__module__, "__reduce__": _reduce_to_plain}
    for name in dir(base):
        attribute = inspect.getattr_static(base, name)
        if not name.startswith("_") and inspect.isfunction(attribute):
            namespace[name] = _guarded_method(name, attribute)
    return type(f"Guarded{base.__name__}", (base, Guarded), namespace)


def _guarded_method(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(self, *args, **kwargs)
        except ToolkitError:
            raise
        except Exception as exc:
            raise component_failure(self, f"running {name}", exc) from exc

    return guarded


def _reduce_to_plain(self: Any) -> tuple[Any, ...]:
    plain = object.__new__(type(self).__mro__[1])
    plain.__dict__.update(vars(self))
    return guard, (plain,)
