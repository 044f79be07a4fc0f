"""Plugin loading and the typed functions through which the core calls hooks.

One factory, :func:`make_plugin_manager`, owns the order: hookspecs, blocked names
(``HOOKPROXY_DISABLE_PLUGINS``), entry points of the ``hookproxy`` group (each failure to import
is reported by name and skipped), test extras, then
``check_pending()`` so a misspelt hook implementation fails at start-up with its name.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import os
import sys
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy
from pydantic import BaseModel

from . import hookspecs
from .errors import ConfigError

log = logging.getLogger("hookproxy.plugins")

FIRSTRESULT_HOOKS = ("resolve_backend", "on_rate_limit", "stream_response")


@dataclass
class PluginInfo:
    name: str
    version: str | None
    distribution: str | None
    hooks: list[str] = field(default_factory=list)


def blocked_names(env: dict[str, str] | None = None) -> list[str]:
    raw = (env if env is not None else os.environ).get("HOOKPROXY_DISABLE_PLUGINS", "")
    return [name.strip() for name in raw.split(",") if name.strip()]


def make_plugin_manager(
    *,
    load_entrypoints: bool = True,
    block: Iterable[str] = (),
    extra: Iterable[tuple[str, object]] = (),
) -> pluggy.PluginManager:
    """Build a plugin manager: specs, blocks, entry points, defaults, extras, check_pending."""
    pm = pluggy.PluginManager(hookspecs.NAME)
    pm.add_hookspecs(hookspecs)
    for name in [*blocked_names(), *block]:
        pm.set_blocked(name)
    if load_entrypoints:
        _load_entrypoints(pm)
    for name, plugin in extra:
        pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigError(f"{exc}; fix the hook name or add the missing hookspec") from exc
    _refuse_async_firstresult(pm)
    if tracing_hooks():
        pm.trace.root.setwriter(lambda message: sys.stderr.write(message))
        pm.enable_tracing()
    return pm


def tracing_hooks() -> bool:
    """``HOOKPROXY_TRACE_HOOKS=1``: every hook call is written to stderr (and none is skipped)."""
    return bool(os.environ.get("HOOKPROXY_TRACE_HOOKS"))


def _load_entrypoints(pm: pluggy.PluginManager) -> None:
    """Like ``load_setuptools_entrypoints``, but one broken plugin does not stop the others."""
    seen: set[str] = set()
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != hookspecs.NAME or ep.name in seen:
                continue
            seen.add(ep.name)
            if pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import error of a plugin is reported, not fatal
                log.error("plugin %r (%s) failed to import and was skipped: %s", ep.name, dist.metadata["name"], exc)
                continue
            try:
                pm.register(plugin, name=ep.name)
            except pluggy.PluginValidationError as exc:
                raise ConfigError(f"plugin {ep.name!r}: {exc}") from exc
            # Recorded like pluggy's own loader does, so list_plugin_distinfo() names the distribution.
            pm._plugin_distinfo.append((plugin, dist))


def _refuse_async_firstresult(pm: pluggy.PluginManager) -> None:
    for hook_name in FIRSTRESULT_HOOKS:
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if inspect.iscoroutinefunction(impl.function):
                raise ConfigError(
                    f"plugin {impl.plugin_name!r}: {hook_name} must not be 'async def' (a coroutine is never "
                    "None, so it would hide every other plugin); return a value instead"
                )


def list_plugins(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """Every registered plugin with its distribution, version and implemented hooks."""
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # a blocked name
            continue
        dist = dists.get(id(plugin))
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        infos.append(
            PluginInfo(
                name=name,
                version=dist.version if dist else None,
                distribution=dist.project_name if dist else None,
                hooks=hooks,
            )
        )
    return sorted(infos, key=lambda info: info.name)


def settings_models(pm: pluggy.PluginManager) -> list[tuple[str, type[BaseModel]]]:
    """(plugin name, settings model) for every plugin implementing ``settings_model``."""
    models: list[tuple[str, type[BaseModel]]] = []
    for impl in pm.hook.settings_model.get_hookimpls():
        model = impl.function()
        if isinstance(model, type) and issubclass(model, BaseModel):
            models.append((impl.plugin_name, model))
        elif model is not None:
            raise ConfigError(f"plugin {impl.plugin_name!r}: settings_model must return a pydantic model class")
    return models


async def await_all(results: Iterable[Awaitable[Any] | None]) -> None:
    """Await every awaitable a non-firstresult hook returned, in order (Datasette's await_me_maybe)."""
    for result in results:
        if result is not None and inspect.isawaitable(result):
            await result
