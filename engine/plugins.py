"""Build the plugin manager and install what plugins contribute into an engine.

Built-in plugins (modules of the top-level ``plugins`` package, listed in
:data:`DEFAULT_PLUGINS`) are registered exactly like third-party ones, which are found
through the ``sdf`` entry-point group. ``SDF_DISABLE_PLUGINS`` (comma-separated names) blocks
plugins by name. Mistakes fail at start-up with the plugin named: a hook implementation
with a misspelled name or unknown argument, an operator or script function registered twice.
Lifecycle events are delivered one implementation at a time, after the commit: a failing
plugin is logged and recorded in the audit log and never affects the change or other plugins.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from dataclasses import dataclass
from functools import lru_cache

import pluggy

from . import hookspecs
from .errors import ConfigurationError

log = logging.getLogger(__name__)
DEFAULT_PLUGINS = (
    "plugins.scoring",
    "plugins.assignment",
    "plugins.http",
    "plugins.notify",
    "plugins.rq_queue",
    "plugins.calendar",
)
ENTRY_POINT_GROUP = hookspecs.PROJECT
LIFECYCLE_HOOKS = ("instance_started", "instance_completed", "task_created", "task_completed", "incident_raised")


def create_plugin_manager(*, disabled=(), entry_points: bool = True, extra=()) -> pluggy.PluginManager:
    """A fresh plugin manager with the built-ins, the installed plugins and ``extra`` objects."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    blocked = {name.strip() for name in disabled if name.strip()}
    for name in blocked:
        pm.set_blocked(name)
    for module_name in DEFAULT_PLUGINS:
        if module_name not in blocked:
            _register(pm, importlib.import_module(module_name), module_name)
    if entry_points:
        for entry in _entry_points():
            if entry.name not in blocked:
                _register(pm, _load(entry), entry.name)
    for plugin in extra:
        _register(pm, plugin, getattr(plugin, "__name__", None) or type(plugin).__name__)
    _check_hook_names(pm)
    return pm


@lru_cache(maxsize=1)
def _entry_points() -> tuple:
    return tuple(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _load(entry):
    try:
        return entry.load()
    except Exception as exc:  # noqa: BLE001 - any import failure names the plugin
        raise ConfigurationError(f"plugin {entry.name!r} ({entry.value}) failed to load: {exc}") from exc


def _register(pm, plugin, name: str | None) -> None:
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise ConfigurationError(f"plugin {name!r} is invalid: {exc}") from exc
    except ValueError as exc:  # already registered under that name
        raise ConfigurationError(f"plugin {name!r} registered twice: {exc}") from exc


def _check_hook_names(pm) -> None:
    """A hook implementation that matches no spec is a typo: refuse it, naming the plugin."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        known = ", ".join(sorted(n for n in dir(pm.hook) if not n.startswith("_") and getattr(pm.hook, n).has_spec()))
        raise ConfigurationError(f"plugin {pm.get_name(exc.plugin)!r}: {exc} (known hooks: {known})") from exc


# -- installing contributions --------------------------------------------------------------------
def install(engine, pm) -> None:
    """Register operators, notification channels and script functions, naming each contributor."""
    for impl in pm.hook.register_operators.get_hookimpls():
        _call(impl, register=_operator_register(engine, impl.plugin_name))
    for impl in pm.hook.register_notification_channels.get_hookimpls():
        _call(impl, register=_channel_register(engine, impl.plugin_name))
    functions: dict[str, str] = {}
    for impl in pm.hook.register_script_functions.get_hookimpls():
        _call(impl, register=_function_register(engine, impl.plugin_name, functions), hook=pm.hook)


def _call(impl, **available):
    return impl.function(*[available[name] for name in impl.argnames])


def _operator_register(engine, plugin_name: str):
    def register(name: str, func, description: str = "") -> None:
        engine.operators.register(name, func, provider=plugin_name, description=description)

    return register


def _channel_register(engine, plugin_name: str):
    def register(name: str, send, description: str = "") -> None:
        try:
            engine.channels.register(name, send, provider=plugin_name, description=description)
        except ConfigurationError as exc:
            raise ConfigurationError(str(exc).replace("operator", "notification channel", 1)) from None

    return register


def _function_register(engine, plugin_name: str, seen: dict[str, str]):
    def register(name: str, func) -> None:
        if name in seen:
            raise ConfigurationError(f"script function {name!r} is provided by both {seen[name]} and {plugin_name}")
        seen[name] = plugin_name
        engine.script_engine.environment.add_functions({name: func})

    return register


def deliver(engine, hook_name: str, **kwargs) -> None:
    """Call each implementation of a lifecycle hook; a failure is logged and audited, not raised."""
    caller = getattr(engine.plugins.hook, hook_name)
    for impl in caller.get_hookimpls():
        try:
            _call(impl, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a plugin must not break the engine
            log.exception("plugin %s failed in %s", impl.plugin_name, hook_name)
            engine.record_plugin_failure(impl.plugin_name, hook_name, exc, kwargs)


def listening(pm) -> frozenset[str]:
    """Lifecycle hooks that at least one plugin implements (others cost nothing to skip)."""
    return frozenset(name for name in LIFECYCLE_HOOKS if getattr(pm.hook, name).get_hookimpls())


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str | None
    hooks: tuple[str, ...]
    builtin: bool

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "hooks": list(self.hooks), "builtin": self.builtin}


def describe(pm) -> list[PluginInfo]:
    """Every registered plugin with its distribution version and the hooks it implements."""
    dist_of = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    infos = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:  # blocked
            continue
        hooks = tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or ()))
        dist = dist_of.get(id(plugin))
        version = dist.version if dist is not None else _package_version()
        infos.append(PluginInfo(name, version, hooks, name in DEFAULT_PLUGINS))
    return infos


def _package_version() -> str | None:
    try:
        return importlib.metadata.version("service-delivery-framework")
    except importlib.metadata.PackageNotFoundError:
        return None
