"""``hookproxy``: start the proxy, or ``hookproxy plugins`` to list plugins and backend state.

A bad flag or configuration prints one line naming the problem and the fix, and exits 2.
Plugins contribute flags through their ``settings_model`` hook, so they appear in ``--help``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import pluggy
from pydantic import BaseModel

from .config import LOG_LEVELS, default_config_path
from .errors import ConfigError
from .factory import build_proxy
from .plugins import list_plugins, make_plugin_manager, settings_models
from .proxy import Proxy

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"hookproxy: error: {message} (see hookproxy --help)\n")


def _core_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--config", metavar="FILE", help="YAML config (default: config/config.yaml if present)")
    add("--host", help="address to listen on (default 127.0.0.1)")
    add("--port", type=int, help="port to listen on (default 8000)")
    add("--default-backend", "--backend", dest="default_backend", metavar="NAME",
        help="backend (or selector such as a:m1|b:m2) for models given without a backend: prefix")
    add("--force-model", metavar="MODEL", help="replace every request's model with MODEL ([backend:]model)")
    add("--api-key", dest="api_keys", action="append", metavar="KEY",
        help="a proxy API key clients must send (repeatable; also HOOKPROXY_API_KEYS, auth.api_keys)")
    add("--disable-auth", action="store_true", default=None, help="accept requests without a key (loopback only)")
    add("--log-level", choices=LOG_LEVELS, help="log level (default INFO)")
    add("--timeout", type=float, metavar="SECONDS", help="upstream timeout (default 120)")
    add("--max-body-bytes", type=int, metavar="N", help="largest accepted request body (default 10 MiB)")
    add("--workers", type=int, metavar="N", help="worker processes serving the port (default 1)")
    add("--state", metavar="URL", help="share backoff, throttles and refresh locks through redis://host:port/db")
    group = parser.add_argument_group("failure handling")
    for flag, help_text in (
        ("--max-silent-wait", "longest Retry-After waited before failing over (default 30 s)"),
        ("--total-timeout-budget", "time budget for retries and failover per request (default 90 s)"),
        ("--keepalive-interval", "seconds between SSE keep-alive comments while waiting (default 8)"),
        ("--max-failover-hops", "most backends tried per request after the first (default 5)"),
        ("--min-retry-wait", "shortest wait before a retry (default 1 s)"),
        ("--stream-idle-timeout", "end a stream after this many seconds without upstream bytes (default 240)"),
        ("--stream-max-lifetime", "end any stream after this many seconds (default 900)"),
    ):
        group.add_argument(flag, type=float if "hops" not in flag else int, help=help_text)
    group.add_argument("--shutdown-grace-period", type=float, metavar="SECONDS",
                       help="on SIGTERM, how long in-flight requests and streams may finish (default 30)")


def _plugin_flags(parser: argparse.ArgumentParser, models: list[tuple[str, type[BaseModel]]]) -> None:
    for plugin_name, model in models:
        group = parser.add_argument_group(f"plugin {plugin_name}")
        for name, field in model.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            aliases = [str(alias) for alias in extra.get("cli_aliases", [])]  # type: ignore[union-attr]
            flags = ["--" + name.replace("_", "-"), *aliases]
            help_text = f"{field.description or name} (default {field.default!r})"
            if field.annotation is bool:
                group.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                   help=help_text)
            else:
                group.add_argument(*flags, dest=name, metavar="VALUE", default=None, help=help_text)


def build_parser(pm: pluggy.PluginManager) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hookproxy",
        description="A plugin-based, OpenAI-compatible LLM proxy. 'hookproxy plugins' lists plugins and backends.",
    )
    _core_flags(parser)
    _plugin_flags(parser, settings_models(pm))
    return parser


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"hookproxy: error: {message}\n")
    raise SystemExit(EXIT_USAGE)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _describe_backends(proxy: Proxy) -> list[str]:
    lines = []
    for backend in proxy.backends.values():
        state = backend.health()
        name = proxy.display_name(backend)
        label = f"{name} ({backend.id})" if name != backend.id else name
        if state.usable:
            models = ", ".join(backend.models())
            listed = f"; models: {models}" if models else ""
            lines.append(f"  {label} [{backend.instance.connector}]: ready{listed}")
        else:
            lines.append(f"  {label} [{backend.instance.connector}]: not usable: {state.reason}")
    for backend_id, reason in proxy.skipped.items():
        lines.append(f"  {backend_id}: skipped: {reason}")
    return lines


def _load(argv: Sequence[str]) -> tuple[Proxy, dict[str, Any]]:
    try:
        pm = make_plugin_manager()
    except ConfigError as exc:
        _fail(exc.message)
    args = build_parser(pm).parse_args(argv)
    values = {key: value for key, value in vars(args).items()
              if value is not None and key != "config"}
    try:
        proxy = build_proxy(default_config_path(args.config), values, pm=pm)
    except ConfigError as exc:
        _fail(exc.message)
    return proxy, values


def load_proxy(argv: Sequence[str]) -> Proxy:
    """The proxy for a command line (exits 2 with one line on a bad flag or configuration)."""
    return _load(argv)[0]


def serve(argv: Sequence[str]) -> None:
    import uvicorn

    from .app import create_app
    from .workers import ARGV_ENV, LOG_FORMAT

    proxy, _values = _load(argv)
    settings = proxy.settings
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    if not settings.auth_enabled and not _is_loopback(settings.host):
        why = "auth is disabled" if settings.disable_auth else "no API key is configured"
        _fail(
            f"refusing to listen on {settings.host} because {why}; add a key with --api-key KEY "
            "(or HOOKPROXY_API_KEYS, auth.api_keys) or listen on --host 127.0.0.1"
        )
    url = f"http://{settings.host}:{settings.port}/v1"
    scale = f", {settings.workers} workers" if settings.workers > 1 else ""
    scale += f", state shared through {proxy.state.where}" if proxy.state.shared else ""
    print(f"hookproxy listening on {url} (auth {'on' if settings.auth_enabled else 'off'}{scale})", flush=True)
    print("\n".join(_describe_backends(proxy)) or "  no backends configured", flush=True)
    if settings.workers > 1:
        # Validated above, once; each worker loads plugins and builds its proxy itself.
        os.environ[ARGV_ENV] = json.dumps(list(argv))
        app: Any = "hookproxy.workers:worker_app"
    else:
        app = create_app(proxy)
    uvicorn.run(
        app,
        factory=settings.workers > 1,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        loop="auto",
        http="auto",
        log_level=settings.log_level.lower(),
        access_log=False,
        # SIGTERM: stop accepting, let in-flight requests and streams finish within the grace
        # period, then the lifespan closes the upstream connections (Proxy.aclose).
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_period),
    )


def plugins_command(argv: Sequence[str]) -> None:
    proxy, _values = _load(argv)
    for info in list_plugins(proxy.pm):
        version = f" {info.version}" if info.version else ""
        dist = f" ({info.distribution}{version})" if info.distribution else ""
        print(f"{info.name}{dist}: hooks {', '.join(info.hooks) or 'none'}")
    print("backends:")
    print("\n".join(_describe_backends(proxy)) or "  none configured")


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "plugins":
        plugins_command(args[1:])
    else:
        serve(args)

