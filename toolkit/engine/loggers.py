"""Run loggers (`train.loggers`): built through the `logger` registry, each isolated from the run.

`RunLoggers.build` turns the spec's list into `contracts.RunLogger` objects (a bad name, a bad
parameter or a missing optional package is a one-line ToolkitError before training starts) and
starts them. Afterwards an exception inside a logger is reported once, as a `LoggerWarning` naming
the logger, its plugin, the method and the exception; that logger is dropped and the run goes on.
`scalars(record)` flattens a record for loggers that want `{tag: float}`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path, PurePath
from typing import Any

from pydantic import BaseModel, ValidationError

from toolkit.build import Builder
from toolkit.contracts import RunLogger, WritesRunFiles
from toolkit.errors import ToolkitError, describe_exception, validation_problems
from toolkit.kinds import LOGGER

#: where the loggers are named in a spec, for error messages
SPEC_PATH = "train.loggers"


class LoggerWarning(UserWarning):
    """A run logger raised; it is dropped for the rest of the run, which goes on."""


@dataclass
class _Active:
    name: str
    label: str  # "logger 'csv' from plugin '...' (module ...)"
    logger: RunLogger


class RunLoggers:
    """The run's loggers; every call reaches each logger still active, in the spec's order."""

    def __init__(self, loggers: Sequence[tuple[str, str, RunLogger]] = ()) -> None:
        self._active = [_Active(name, label, logger) for name, label, logger in loggers]

    @classmethod
    def build(
        cls,
        specs: Sequence[Any],
        *,
        builder: Builder,
        run_dir: Path,
        resume_step: int | None,
        user_entries: Collection[str] = (),
    ) -> RunLoggers:
        """Build every logger of `specs` (`{type: NAME, **params}` models or mappings, or bare names),
        then start each in `run_dir` (created if needed); one whose `start` raises is warned about
        and dropped. A logger whose `run_files` would replace one of `user_entries` (the names the
        user had in the folder, `run_dir.user_entries`) is a ToolkitError before any logger starts."""
        built = [_build_one(spec, index, builder) for index, spec in enumerate(specs)]
        run_dir = Path(run_dir)
        for index, (name, _, logger) in enumerate(built):
            _check_user_files(logger, f"{SPEC_PATH}.{index} ({name!r})", run_dir, user_entries)
        loggers = cls(built)
        run_dir.mkdir(parents=True, exist_ok=True)
        loggers._call("start", lambda logger: logger.start(run_dir, resume_step=resume_step))
        return loggers

    @property
    def names(self) -> list[str]:
        """The registered names of the loggers still active."""
        return [item.name for item in self._active]

    def __len__(self) -> int:
        return len(self._active)

    def __iter__(self) -> Iterator[RunLogger]:
        return iter([item.logger for item in self._active])

    def log(self, record: Mapping[str, Any]) -> None:
        """One "train", "val" or "epoch" record (see `contracts.RunLogger`)."""
        self._call("log", lambda logger: logger.log(record))

    def log_image(self, tag: str, path: Path, *, step: int) -> None:
        """A PNG the run wrote (a plot), under `tag`, at optimizer step `step`."""
        self._call("log_image", lambda logger: logger.log_image(tag, Path(path), step=step))

    def flush(self) -> None:
        """Make what was logged durable (called before every checkpoint save)."""
        self._call("flush", lambda logger: logger.flush())

    def finish(self, summary: Mapping[str, Any]) -> None:
        """The end of the run: its summary as a dict."""
        self._call("finish", lambda logger: logger.finish(summary))

    def _call(self, method: str, call: Callable[[RunLogger], None]) -> None:
        for item in list(self._active):
            try:
                call(item.logger)
            except (Exception, SystemExit) as exc:  # a logger never stops the run
                self._active.remove(item)
                warnings.warn(
                    f"{item.label} failed in {method}: {describe_exception(exc)}; it is dropped for "
                    "the rest of the run, which goes on",
                    LoggerWarning,
                    stacklevel=3,
                )


def _build_one(spec: Any, index: int, builder: Builder) -> tuple[str, str, RunLogger]:
    """(name, label, logger) of one `train.loggers` entry; one-line ToolkitErrors for user mistakes."""
    path = f"{SPEC_PATH}.{index}"
    name = _name_of(spec, path)
    entry = builder.registry(LOGGER).get(name, path=f"{path}.type")
    params = spec if isinstance(spec, entry.params) else _params_of(spec)
    if not isinstance(params, entry.params):
        try:
            params = entry.params.model_validate(params)
        except ValidationError as exc:
            problems = validation_problems(exc)
            known = ", ".join(entry.params.model_fields) or "none"
            raise ToolkitError(
                f"{path}: logger {name!r} has invalid parameters ({problems}); its parameters: {known}"
            ) from None
    plugin, logger = builder.logger(name, params, path=path)
    return name, f"logger {name!r} from {plugin}", logger


def _check_user_files(logger: RunLogger, where: str, run_dir: Path, user_entries: Collection[str]) -> None:
    """Refuse a logger that would replace a file or folder the user had in the run folder."""
    if not isinstance(logger, WritesRunFiles):
        return
    for relative in logger.run_files:
        parts = PurePath(relative).parts
        if parts and parts[0] in user_entries and (run_dir / relative).exists():
            raise ToolkitError(
                f"{where} would write {relative} in {run_dir}, which holds a {relative} the toolkit did "
                "not write; move it away, give the logger another file name, or choose another folder "
                "with --out"
            )


def _name_of(spec: Any, path: str) -> str:
    """The logger name of a `train.loggers` entry: a bare name, or the `type` of a model or mapping."""
    name = spec if isinstance(spec, str) else None
    if isinstance(spec, BaseModel):
        name = getattr(spec, "type", None)
    elif isinstance(spec, Mapping):
        name = spec.get("type")
    if not isinstance(name, str):
        raise ToolkitError(
            f"{path}: expected a logger name or {{type: NAME, ...}}, got {spec!r}; "
            f"e.g. {SPEC_PATH}: [jsonl, csv]"
        )
    return name


def _params_of(spec: Any) -> dict[str, Any]:
    """The parameters of an entry (everything but `type`)."""
    if isinstance(spec, str):
        return {}
    data = spec.model_dump() if isinstance(spec, BaseModel) else dict(spec)
    return {key: value for key, value in data.items() if key != "type"}


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """A record flattened into `{tag: float}`.

    "train": `train/loss/<term>`, `train/lr`, `train/images_per_s`; "val": `val/<metric>` for each
    scalar metric, `val/<metric>/<class>` for each `per_class` entry and `val/<name>/<key>` for
    other mappings of scalars (non-scalars such as a confusion matrix are left out); "epoch":
    `epoch/loss/<term>` (the epoch's means) and `epoch/seconds` (its metrics are the "val" record's).
    """
    kind = record.get("kind")
    flat: dict[str, float] = {}
    if kind == "train":
        flat.update(_prefixed("train/loss", record.get("loss")))
        for key in ("lr", "images_per_s"):
            if _is_scalar(record.get(key)):
                flat[f"train/{key}"] = float(record[key])
    elif kind == "val":
        for name, value in (record.get("metrics") or {}).items():
            if _is_scalar(value):
                flat[f"val/{name}"] = float(value)
            elif name == "per_class" and isinstance(value, Mapping):
                for class_name, values in value.items():
                    for metric, number in values.items() if isinstance(values, Mapping) else ():
                        if _is_scalar(number):
                            flat[f"val/{metric}/{class_name}"] = float(number)
            elif isinstance(value, Mapping):
                flat.update(_prefixed(f"val/{name}", value))
    elif kind == "epoch":
        flat.update(_prefixed("epoch/loss", record.get("train_loss")))
        if _is_scalar(record.get("seconds")):
            flat["epoch/seconds"] = float(record["seconds"])
    return flat


def _prefixed(prefix: str, values: Any) -> dict[str, float]:
    if not isinstance(values, Mapping):
        return {}
    return {f"{prefix}/{key}": float(value) for key, value in values.items() if _is_scalar(value)}


def _is_scalar(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)
