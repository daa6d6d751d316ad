"""Plugin manager: discovers plugins (entry points, -p, TOOLKIT_PLUGINS, spec files), isolates failures.

Built-in plugins are ordinary entry points of the `toolkit` group; nothing here names them.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from toolkit import hookspecs
from toolkit.errors import DuplicateComponentError, PluginError, ToolkitError, closest
from toolkit.kinds import KINDS, KINDS_BY_NAME
from toolkit.registry import PluginInfo, Registry

ENTRY_POINT_GROUP = "toolkit"
ENV_PLUGINS = "TOOLKIT_PLUGINS"
ENV_STRICT = "TOOLKIT_STRICT_PLUGINS"
ENV_TRACE = "TOOLKIT_TRACE_PLUGINS"
_TRUE = {"1", "true", "yes", "on"}
#: what a failing plugin may raise without taking toolkit down (a `sys.exit` at import included;
#: KeyboardInterrupt still stops the program)
_PLUGIN_FAILURES = (Exception, SystemExit)


class PluginWarning(UserWarning):
    """A plugin failed to load or register; the rest of toolkit keeps working."""


@dataclass(frozen=True)
class FailedPlugin:
    """A plugin that could not be imported or could not register its components."""

    info: PluginInfo
    stage: str  # "import" or "register"
    error: str

    def describe(self) -> str:
        return f"{self.info.describe()} failed to {self.stage}: {self.error}"


class PluginManager:
    """Loads plugins from every source, calls their hooks and holds one registry per kind."""

    def __init__(
        self,
        *,
        modules: Sequence[str] = (),
        blocked: Sequence[str] = (),
        use_entry_points: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.strict = env.get(ENV_STRICT, "").strip().lower() in _TRUE
        env_modules, env_blocked = split_plugin_args(_split_csv(env.get(ENV_PLUGINS, "")))
        cli_modules, cli_blocked = split_plugin_args(modules)
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        for name in {*env_blocked, *cli_blocked, *blocked}:
            self._pm.set_blocked(name)
        self.tracing = env.get(ENV_TRACE, "").strip().lower() in _TRUE
        if self.tracing:  # every hook call and plugin import time, on stderr
            self._pm.trace.root.setwriter(sys.stderr.write)
            self._pm.enable_tracing()
        self.registries: dict[str, Registry] = {
            kind: Registry(kind, injected=tuple(KINDS_BY_NAME[kind].injected)) for kind in KINDS
        }
        self.loaded: list[PluginInfo] = []
        self.failed: list[FailedPlugin] = []
        #: spec models derived from the registries, keyed by their contents (see toolkit.spec)
        self.spec_model_cache: dict[Any, Any] = {}
        pending: list[PluginInfo] = []
        if use_entry_points:
            pending += self._load_entry_points()
        pending += self._load_modules(env_modules, source=ENV_PLUGINS)
        pending += self._load_modules(cli_modules, source="-p")
        self._activate(pending)

    # -- public API ---------------------------------------------------------------------------
    def registry(self, kind: str) -> Registry:
        """The registry of `kind` (one of toolkit.registry.KINDS)."""
        if kind not in self.registries:
            raise ToolkitError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")
        return self.registries[kind]

    def add_modules(self, modules: Iterable[str], *, source: str) -> None:
        """Load further plugin modules (e.g. a spec file's `plugins:` list); known ones are skipped."""
        names, blocked = split_plugin_args(list(modules))
        for name in blocked:
            self.disable(name)
            self._pm.set_blocked(name)
        self._activate(self._load_modules(names, source=source))

    def disable(self, name: str) -> None:
        """Unload a loaded plugin (by plugin or module name): its components disappear."""
        info = self.find_plugin(name)
        if info is None:
            return
        self._rollback(info)
        self.loaded.remove(info)

    def register_plugin(self, plugin: Any, name: str) -> None:
        """Register an in-process plugin object or module (tests, notebooks)."""
        module = getattr(plugin, "__name__", type(plugin).__name__)
        info = PluginInfo(name=name, module=module, source="api")
        if self._register(plugin, info):
            self._activate([info])

    def find_plugin(self, name: str) -> PluginInfo | None:
        return next((p for p in self.loaded if name in (p.name, p.module)), None)

    def failed_names(self) -> list[str]:
        return [f.info.name for f in self.failed]

    # -- loading ------------------------------------------------------------------------------
    def _load_entry_points(self) -> list[PluginInfo]:
        infos: list[PluginInfo] = []
        seen: set[tuple[str, str]] = set()
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if (ep.name, ep.value) in seen or self._is_blocked(ep.name, ep.module):
                continue
            seen.add((ep.name, ep.value))
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                source="entry point",
                distribution=dist.name if dist is not None else None,
                version=dist.version if dist is not None else None,
            )
            try:
                plugin, info = self._timed_import(ep.load, info)
            except _PLUGIN_FAILURES as exc:  # a broken plugin must not take toolkit down
                self._fail(info, "import", exc)
                continue
            if self._register(plugin, info):
                infos.append(info)
        return infos

    def _load_modules(self, modules: Iterable[str], *, source: str) -> list[PluginInfo]:
        infos: list[PluginInfo] = []
        for module_name in modules:
            if self._is_blocked(module_name, module_name) or self.find_plugin(module_name):
                continue
            if any(f.info.module == module_name for f in self.failed):
                continue
            info = PluginInfo(name=module_name, module=module_name, source=source)
            try:
                plugin, info = self._timed_import(
                    lambda name=module_name: importlib.import_module(name), info
                )
            except _PLUGIN_FAILURES as exc:
                self._fail(info, "import", exc)
                continue
            if self._pm.is_registered(plugin):
                continue  # already loaded through its entry point
            if self._register(plugin, info):
                infos.append(info)
        return infos

    def _timed_import(self, load: Any, info: PluginInfo) -> tuple[Any, PluginInfo]:
        """`load()` timed: the plugin and its info with the import time and whether it imported torch
        (which costs seconds on every command); both go to stderr with TOOLKIT_TRACE_PLUGINS."""
        had_torch = "torch" in sys.modules
        started = time.perf_counter()
        plugin = load()
        info = dataclasses.replace(
            info,
            import_seconds=time.perf_counter() - started,
            imported_torch=not had_torch and "torch" in sys.modules,
        )
        if self.tracing:
            torch_note = " (it imported torch)" if info.imported_torch else ""
            sys.stderr.write(
                f"toolkit: plugin {info.name} imported in {info.import_seconds:.2f} s{torch_note}\n"
            )
        return plugin, info

    def _register(self, plugin: Any, info: PluginInfo) -> bool:
        try:
            self._pm.register(plugin, name=info.name)
        except Exception as exc:  # pluggy validates hook signatures here
            self._fail(info, "register", exc)
            return False
        _warn_unmarked_hooks(plugin, info)
        return True

    def _activate(self, infos: list[PluginInfo]) -> None:
        """Check hook names, then let each new plugin register its components."""
        self._check_pending()
        for info in infos:
            self._call_hooks(info)

    def _check_pending(self) -> None:
        """A hook implementation that matches no hook spec is a (misspelled) error.

        pluggy's `check_pending` finds it; the message then names the plugin and the closest hook.
        """
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError:
            pass
        else:
            return
        hook_names = list(hookspecs.HOOK_FOR_KIND.values())
        for hook_name, caller in vars(self._pm.hook).items():
            if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if impl.opts.get("optionalhook"):
                    continue
                owner = self.find_plugin(impl.plugin_name)
                who = owner.describe() if owner else f"plugin {impl.plugin_name!r}"
                hint = closest(hook_name, hook_names, n=1)
                did_you_mean = f" (did you mean {hint[0]}?)" if hint else ""
                raise PluginError(
                    f"{who} implements unknown hook {hook_name!r}{did_you_mean}; "
                    f"toolkit hooks are: {', '.join(hook_names)}. Fix the name or disable the "
                    f"plugin with '-p no:{impl.plugin_name}'"
                )

    def _call_hooks(self, info: PluginInfo) -> None:
        """Call the new plugin's hooks only (pluggy's subset hook caller: traced like any call)."""
        plugin = self._pm.get_plugin(info.name)
        others = [p for p in self._pm.get_plugins() if p is not plugin]
        try:
            for kind, hook_name in hookspecs.HOOK_FOR_KIND.items():
                registry = self.registries[kind]
                with registry.registering_as(info):
                    self._pm.subset_hook_caller(hook_name, remove_plugins=others)(registry=registry)
        except DuplicateComponentError:
            raise  # a duplicate name is never resolved silently
        except _PLUGIN_FAILURES as exc:
            self._rollback(info)
            self._fail(info, "register", exc)
            return
        self.loaded.append(info)

    def _rollback(self, info: PluginInfo) -> None:
        for registry in self.registries.values():
            registry.remove_plugin(info.name)
        if self._pm.has_plugin(info.name):
            self._pm.unregister(name=info.name)

    def _fail(self, info: PluginInfo, stage: str, exc: BaseException) -> None:
        failure = FailedPlugin(info, stage, _failure_text(exc))
        if self.strict:
            raise PluginError(f"{failure.describe()} ({ENV_STRICT} is set)") from exc
        self.failed.append(failure)
        for registry in self.registries.values():
            registry.failed_plugins.append(info.name)
        warnings.warn(
            f"{failure.describe()}; other plugins keep working "
            f"(disable it with '-p no:{info.name}', make this fatal with {ENV_STRICT}=1)",
            PluginWarning,
            stacklevel=2,
        )

    @property
    def blocked(self) -> set[str]:
        """Plugin and module names disabled with `no:NAME` (pluggy's blocked names)."""
        return {name for name, plugin in self._pm.list_name_plugin() if plugin is None}

    def _is_blocked(self, name: str, module: str) -> bool:
        return self._pm.is_blocked(name) or self._pm.is_blocked(module)


def _failure_text(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


def split_plugin_args(values: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split `-p` values into modules to load and names disabled with `no:NAME`."""
    modules: list[str] = []
    blocked: list[str] = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        if value.startswith("no:"):
            blocked.append(value[3:])
        else:
            modules.append(value)
    return modules, blocked


def _split_csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _warn_unmarked_hooks(plugin: Any, info: PluginInfo) -> None:
    if not isinstance(plugin, ModuleType):
        return
    for hook_name in hookspecs.HOOK_FOR_KIND.values():
        function = getattr(plugin, hook_name, None)
        if callable(function) and not hasattr(function, f"{hookspecs.PROJECT_NAME}_impl"):
            warnings.warn(
                f"{info.describe()} defines {hook_name} without @toolkit.hookimpl; it is ignored",
                PluginWarning,
                stacklevel=3,
            )


_default: PluginManager | None = None


def configure(*, modules: Sequence[str] = (), blocked: Sequence[str] = ()) -> PluginManager:
    """Create the process-wide plugin manager with extra modules (the CLI's `-p`)."""
    global _default
    _default = PluginManager(modules=modules, blocked=blocked)
    return _default


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, created on first use from entry points and the environment."""
    global _default
    if _default is None:
        _default = PluginManager()
    return _default
