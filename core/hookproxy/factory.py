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
from .plugins import make_plugin_manager, settings_models
from .proxy import Proxy
from .routing import parse_route


def build_proxy(
    config_path: Path | None = None,
    cli: Mapping[str, Any] | None = None,
    *,
    pm: pluggy.PluginManager | None = None,
    env: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Proxy:
    """Load config and plugins and resolve every backend; raises ConfigError with a one-line fix."""
    env = os.environ if env is None else env
    cli = dict(cli or {})
    pm = pm if pm is not None else make_plugin_manager()
    models = settings_models(pm)
    core_cli = {key: value for key, value in cli.items() if key in Settings.model_fields}
    config = load_config(config_path, core_cli, env)
    where = str(config_path) if config_path else "settings"
    plugin_fields = {name for _, model in models for name in model.model_fields}
    unknown = sorted(set(config.plugin_values) - plugin_fields)
    if unknown:
        known = ", ".join(sorted(plugin_fields | {"default_backend", "force_model"})) or "none"
        raise ConfigError(f"{where}: unknown key backends.{unknown[0]} (not a backend block); known settings: {known}")
    plugin_settings: dict[type[BaseModel], BaseModel] = {}
    for plugin_name, model in models:
        plugin_settings[model] = build_plugin_settings(
            model, config.plugin_values, cli, env, f"{where} (settings of plugin {plugin_name!r})"
        )
    proxy = Proxy(pm, config, plugin_settings, transport=transport)
    check_failover_routes(proxy, where)
    return proxy


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
