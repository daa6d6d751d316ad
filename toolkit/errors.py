"""User-facing errors: the CLI prints their message and exits with code 2, without a traceback."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Sequence
from typing import Any

#: set to 1 to see the traceback behind a user error (for plugin authors)
ENV_DEBUG = "TOOLKIT_DEBUG"
#: the exit code of a command a user error stopped (or, for predict, an input it could not read)
EXIT_USER_ERROR = 2


def debug_enabled() -> bool:
    """True when TOOLKIT_DEBUG asks for tracebacks behind user errors."""
    return os.environ.get(ENV_DEBUG, "").strip().lower() in {"1", "true", "yes", "on"}


class ToolkitError(Exception):
    """An error the user can fix (bad spec, missing file, broken plugin). Exit code 2 in the CLI.

    Picklable whatever a subclass's constructor takes (a DataLoader worker sends it to the main
    process): it is rebuilt from its message and attributes.
    """

    exit_code = EXIT_USER_ERROR

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (type(self), str(self), dict(self.__dict__)))


def _rebuild_error(cls: type[ToolkitError], message: str, state: dict[str, Any]) -> ToolkitError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class PluginError(ToolkitError):
    """A plugin could not be loaded or broke the plugin contract."""


class ComponentError(PluginError):
    """A plugin's component raised while it was built or used; the message names the kind, the
    component and its plugin (TOOLKIT_DEBUG=1 shows the plugin's traceback)."""


def describe_exception(exc: BaseException) -> str:
    """`Type: message` on one line (the first line of the message)."""
    text = first_line(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (empty when it has none)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


def validation_problems(exc: Exception) -> str:
    """A pydantic `ValidationError` as `field: message; ...` on one line (`params` for the model
    itself, pydantic's "Value error, " prefix dropped); any other exception as `describe_exception`."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return describe_exception(exc)
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'params'}: "
        f"{str(error['msg']).removeprefix('Value error, ')}"
        for error in errors(include_url=False)
    )


class DuplicateComponentError(ToolkitError):
    """Two plugins registered the same component name for one kind."""


class UnknownComponentError(ToolkitError, KeyError):
    """A component name that no loaded plugin registered.

    The message names the kind, the spec path, the closest names, how to list what exists
    and the plugins that failed to load (one of them may have provided the name).
    """

    def __init__(
        self,
        kind: str,
        name: str,
        *,
        known: Iterable[str],
        path: str | None = None,
        failed_plugins: Sequence[str] = (),
    ) -> None:
        self.kind = kind
        self.name = name
        self.path = path
        self.known = sorted(known)
        self.suggestions = closest(name, self.known)
        self.failed_plugins = list(failed_plugins)
        super().__init__(self.describe())

    def describe(self) -> str:
        where = f"{self.path}: " if self.path else ""
        text = f"{where}unknown {self.kind} {self.name!r}"
        if self.suggestions:
            text += f" (did you mean {' or '.join(self.suggestions)}?)"
        available = ", ".join(self.known) if self.known else "none"
        text += f"; available {self.kind}s: {available}; list them with 'toolkit plugins'"
        if self.failed_plugins:
            text += f"; plugins that failed to load: {', '.join(self.failed_plugins)}"
        return text

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.describe()


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Return up to `n` candidates close to `name` (difflib ratio >= 0.6), best first."""
    return difflib.get_close_matches(str(name), list(candidates), n=n, cutoff=0.6)


class DataError(ToolkitError):
    """Bad data: a missing or corrupt file, a malformed annotation file."""


class BadSampleError(DataError):
    """One sample (image or annotation) that cannot be used; names the file and the annotation.

    With `data.on_bad_sample: skip` the loader counts and skips it instead of stopping.
    """

    def __init__(self, file: str, reason: str, *, annotation: str | None = None) -> None:
        self.file = file
        self.reason = reason
        self.annotation = annotation
        where = f"{file}, annotation {annotation}" if annotation else file
        super().__init__(f"{where}: {reason}")
