"""Building a :class:`Proxy` from configuration: the one path used by the CLI and by tests."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pluggy
from fastapi import FastAPI
from pydantic import BaseModel

from .app import create_app
from .config import Settings, build_plugin_settings, load_config
from .errors import ConfigError, InvalidRequest, UnknownBackend
from .original_names import describe, fold_aliases, plugin_aliases
from .plugins import make_plugin_manager, settings_models
from .proxy import Proxy
from .routing import parse_chain, parse_route


def build_proxy(
    config_path: Path | None = None,
    cli: Mapping[str, Any] | None = None,
    *,
    pm: pluggy.PluginManager | None = None,
    env: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Proxy:
    """Load config and plugins and resolve every backend; raises ConfigError with a one-line fix."""
    cli = dict(cli or {})
    pm = pm if pm is not None else make_plugin_manager()
    models = settings_models(pm)
    aliased = fold_aliases(os.environ if env is None else env, plugin_aliases(model for _, model in models))
    env = aliased.env
    core_cli = {key: value for key, value in cli.items() if key in Settings.model_fields}
    plugin_fields = {name for _, model in models for name in model.model_fields}
    config = load_config(config_path, core_cli, env,
                         moved_keys={name: f"backends: (backends.{name})" for name in plugin_fields})
    config.original_env_line = describe(aliased)
    where = str(config_path) if config_path else "settings"
    unknown = sorted(set(config.plugin_values) - plugin_fields)
    if unknown:
        known = ", ".join(sorted(plugin_fields | {"default_backend", "force_model", "static_route"})) or "none"
        raise ConfigError(f"{where}: unknown key backends.{unknown[0]} (not a backend block); known settings: {known}")
    plugin_settings: dict[type[BaseModel], BaseModel] = {}
    for plugin_name, model in models:
        plugin_settings[model] = build_plugin_settings(
            model, config.plugin_values, cli, env, f"{where} (settings of plugin {plugin_name!r})",
            yaml_where=f"{where}: backends", env_labels={target: original for original, target in aliased.used},
        )
    proxy = Proxy(pm, config, plugin_settings, transport=transport)
    check_default_routes(proxy)
    check_failover_routes(proxy, where)
    return proxy


def check_default_routes(proxy: Proxy) -> None:
    """An unknown ``--default-backend`` or ``--force-model`` backend is a start-up error.

    Without this check the proxy starts and then fails every request with the same 400.
    """
    settings = proxy.settings
    for setting, flag, value in (("default_backend", "--default-backend", settings.default_backend),
                                 ("force_model", "--force-model", settings.force_model)):
        if not value:
            continue
        try:
            routes = parse_chain(value)
        except InvalidRequest as exc:
            raise ConfigError(f"{setting} {value!r} ({flag}): {exc.message}") from None
        for route in routes:
            # A bare element of default_backend is a backend name; of force_model, a model.
            name = route.backend if route.backend is not None else (route.model if setting == "default_backend"
                                                                    else None)
            if name is None:
                continue
            try:
                proxy.lookup(name)
            except UnknownBackend:
                known = ", ".join(sorted({*proxy.aliases, *proxy.backends})) or "none configured"
                raise ConfigError(
                    f"{setting} {value!r} names backend {name!r}, which is not configured; "
                    f"pass {flag} with one of the known backends: {known}"
                ) from None


def check_failover_routes(proxy: Proxy, where: str) -> None:
    """Every backend a named failover route lists must exist: a typo is found at start, not when used."""
    for name, route in proxy.settings.failover_routes.items():
        for element in route.elements:
            try:
                backend = parse_route(element).backend
            except InvalidRequest as exc:
                raise ConfigError(f"{where}: failover_routes.{name}: {exc.message}") from None
            if backend is None:
                continue  # a bare model goes to the default backend
            try:
                proxy.lookup(backend)
            except UnknownBackend:
                known = ", ".join(sorted(proxy.aliases)) or "none configured"
                raise ConfigError(
                    f"{where}: failover_routes.{name} names unknown backend {backend!r} in {element!r}; "
                    f"known backends: {known}"
                ) from None


def build_app(
    config_path: Path | None = None,
    cli: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> FastAPI:
    return create_app(build_proxy(config_path, cli, **kwargs))

