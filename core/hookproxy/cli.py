"""``hookproxy``: start the proxy; ``plugins``, ``check``, ``init`` and ``demo`` are subcommands.

A bad flag or configuration prints one line naming the problem and the fix, and exits 2.
Plugins contribute flags through their ``settings_model`` hook, so they appear in ``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pluggy
from pydantic import BaseModel

from . import __version__
from .config import DEFAULT_CONFIG, LOG_LEVELS, Settings, default_config_path
from .errors import ConfigError
from .factory import build_proxy
from .observe import RequestIdFilter
from .original_names import check_static_route
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
    forced = parser.add_mutually_exclusive_group()
    forced.add_argument("--force-model", metavar="MODEL",
                        help="replace every request's model with MODEL ([backend:]model)")
    forced.add_argument("--static-route", dest="force_model", metavar="BACKEND:MODEL", type=_static_route,
                        help="the original proxy's name for --force-model, strictly BACKEND:MODEL")
    add("--api-key", dest="api_keys", action="append", metavar="KEY",
        help="a proxy API key clients must send (repeatable; also HOOKPROXY_API_KEYS, auth.api_keys)")
    add("--disable-auth", action="store_true", default=None, help="accept requests without a key (loopback only)")
    add("--log-level", choices=LOG_LEVELS, type=str.upper, help="log level, any case (default INFO)")
    add("--log", dest="log_file", metavar="FILE", help="also append the log to FILE")
    add("--timeout", type=float, metavar="SECONDS", help="upstream timeout (default 120)")
    add("--max-body-bytes", type=int, metavar="N", help="largest accepted request body (default 10 MiB)")
    add("--upstream-client", choices=("native", "aiohttp"),
        help="HTTP client for proxied requests: native (default, asyncio + httptools) or aiohttp (the fallback)")
    add("--ca-bundle", metavar="FILE", help="PEM file of extra CA certificates trusted for https upstreams")
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
    group.add_argument("--learn-cooldowns", action=argparse.BooleanOptionalAction, default=None,
                       help="honour a backend's Retry-After for every request until it passes (default on)")
    add("--max-response-bytes", type=int, metavar="N",
        help="largest non-streamed upstream answer (default 64 MiB; 502 above)")
    _server_flags(parser.add_argument_group("server limits"))
    watch = parser.add_argument_group("observability")
    watch.add_argument("--metrics", action=argparse.BooleanOptionalAction, default=None,
                       help="serve Prometheus metrics at GET /metrics (default on; needs the proxy key)")
    watch.add_argument("--access-log", choices=("off", "text", "json"),
                       help="one log line per request on hookproxy.access (default off)")


def _server_flags(group: argparse._ArgumentGroup) -> None:
    """The HTTP server's limits against hostile or broken clients (``server.py``)."""
    add = group.add_argument
    add("--max-connections", type=int, metavar="N",
        help="most open client connections; idle ones are closed first, then 503 (default 1000)")
    add("--max-header-bytes", type=int, metavar="N", help="largest request head (default 64 KiB; 431 above)")
    add("--max-header-count", type=int, metavar="N", help="most request headers (default 100; 431 above)")
    add("--header-timeout", type=float, metavar="SECONDS", help="time to send the request head (default 15; 408)")
    add("--body-timeout", type=float, metavar="SECONDS", help="time to send the request body (default 120; 408)")
    add("--keep-alive-timeout", type=float, metavar="SECONDS",
        help="close an idle keep-alive connection after this long (default 15)")
    add("--trusted-proxy", dest="trusted_proxies", action="append", metavar="ADDRESS",
        help="a reverse proxy whose X-Forwarded-For is believed (repeatable; address or network; default none)")
    add("--max-throttled-clients", type=int, metavar="N",
        help="addresses the bad-key throttle remembers (default 10000)")


def _static_route(value: str) -> str:
    try:
        return check_static_route(value, "--static-route")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.message.removeprefix("--static-route ")) from None


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


MAIN_DESCRIPTION = (
    "A plugin-based, OpenAI-compatible LLM proxy. Commands: 'hookproxy' serves; 'hookproxy demo' serves a "
    "demo backend that needs no model; 'hookproxy check' validates the configuration without serving; "
    "'hookproxy init [DIR]' writes a starter config; 'hookproxy plugins' lists plugins and backends."
)


def build_parser(
    pm: pluggy.PluginManager, prog: str = "hookproxy", description: str = MAIN_DESCRIPTION
) -> argparse.ArgumentParser:
    # allow_abbrev=False: `--log x` must not become `--log-level x`; every flag is spelled out.
    parser = _Parser(prog=prog, description=description, allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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


def public_host_refusal(settings: Settings) -> str | None:
    """Why the proxy refuses to listen (a public address without auth), or ``None``."""
    if settings.auth_enabled or _is_loopback(settings.host):
        return None
    why = "auth is disabled" if settings.disable_auth else "no API key is configured"
    return (f"refusing to listen on {settings.host} because {why}; add a key with --api-key KEY "
            "(or HOOKPROXY_API_KEYS, auth.api_keys) or listen on --host 127.0.0.1")


def _describe_backends(proxy: Proxy, *, everything: bool = True) -> list[str]:
    """One line per backend; without ``everything``, defaults that cannot serve are left out."""
    lines = []
    for backend in proxy.backends.values():
        state = backend.health()
        if not everything and backend.instance.synthesized and not state.usable:
            continue
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


def _load(
    argv: Sequence[str], prog: str = "hookproxy", description: str = MAIN_DESCRIPTION
) -> tuple[Proxy, dict[str, Any]]:
    try:
        pm = make_plugin_manager()
    except ConfigError as exc:
        _fail(exc.message)
    args = build_parser(pm, prog, description).parse_args(argv)
    values = {key: value for key, value in vars(args).items()
              if value is not None and key != "config"}
    try:
        proxy = build_proxy(default_config_path(args.config or config_from_env(os.environ)), values, pm=pm)
    except ConfigError as exc:
        _fail(exc.message)
    return proxy, values


#: Tracked objects allocated (net) before a young collection; see :func:`settle_after_start`.
YOUNG_GC_THRESHOLD = 25_000


def settle_after_start() -> None:
    """Once start-up is done, keep the garbage collector off what start-up built.

    Start-up leaves tens of thousands of long-lived objects (modules, pydantic models, FastAPI
    routes). Every full collection walked them all: about 12 µs per request on average and
    pauses of ~38 ms in the bench. ``gc.freeze`` moves them out of the collector's sight.

    The young generation's threshold is raised from 700 to 25,000 tracked objects. The proxy
    makes no reference cycles per request (only a closed connection leaves one behind), but 64
    requests in flight hold thousands of young objects, so at 700 a young collection ran every
    few requests and walked them all: 6-7% of the CPU per request in the bench profile. Garbage
    cycles still go, a little later (a few MB at most).
    On Python 3.12+, ``HOOKPROXY_EAGER_TASKS=1`` also starts each request's task eagerly.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, older, oldest)
    if os.environ.get("HOOKPROXY_EAGER_TASKS") and sys.version_info >= (3, 12):
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]


def load_proxy(argv: Sequence[str]) -> Proxy:
    """The proxy for a command line (exits 2 with one line on a bad flag or configuration)."""
    return _load(argv)[0]


def config_source_line(proxy: Proxy) -> str:
    """Which config file is in use, or where none was found (so a start outside the repo is clear)."""
    if proxy.config.path is not None:
        return f"  config: {proxy.config.path}"
    return (f"  config: none found (looked for {DEFAULT_CONFIG} in {Path.cwd()}); "
            "run 'hookproxy init' to write one or pass --config FILE")


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket before the banner, so a busy port is one line, not a traceback."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _name, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; check --host") from exc
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; stop the process using it or pick "
            "another port with --port N (or HOOKPROXY_PORT)"
        ) from exc
    sock.set_inheritable(True)
    return sock


def config_from_env(env: Mapping[str, str]) -> str | None:
    """``HOOKPROXY_CONFIG``, else the original proxy's ``CONFIG_FILE``."""
    return env.get("HOOKPROXY_CONFIG") or env.get("CONFIG_FILE") or None


def setup_logging(level: str, log_file: str | None) -> None:
    """Log to stderr and, with ``--log FILE``, append to FILE as well."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        try:
            handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        except OSError as exc:
            _fail(f"cannot open log file {log_file}: {exc.strerror}; pass --log with a writable path")
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
    for handler in handlers:  # log lines carry the id of the request they are about (- outside one)
        handler.addFilter(RequestIdFilter())
        handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=handlers)


def serve(argv: Sequence[str]) -> None:
    from .app import create_app
    from .server import serve as serve_app
    from .workers import ARGV_ENV, share_metrics, supervise

    proxy, _values = _load(argv)
    settings = proxy.settings
    setup_logging(settings.log_level, settings.log_file)
    if proxy.config.original_env_line:
        logging.getLogger("hookproxy.config").info("%s", proxy.config.original_env_line)
    refusal = public_host_refusal(settings)
    if refusal:
        _fail(refusal)
    try:
        sock = bind_socket(settings.host, settings.port)
    except ConfigError as exc:
        _fail(exc.message)
    port = sock.getsockname()[1]
    url = f"http://{settings.host}:{port}/v1"
    scale = f", {settings.workers} workers" if settings.workers > 1 else ""
    scale += f", state shared through {proxy.state.where}" if proxy.state.shared else ""
    banner = f"hookproxy listening on {url} (auth {'on' if settings.auth_enabled else 'off'}{scale})"
    print(banner, flush=True)
    logging.getLogger("hookproxy").info("%s", banner)  # so a --log file shows each start
    print(config_source_line(proxy), flush=True)
    print("\n".join(_describe_backends(proxy, everything=False)) or "  no backends configured", flush=True)
    if settings.workers > 1:
        # Validated above, once; each worker loads plugins and builds its proxy itself.
        os.environ[ARGV_ENV] = json.dumps(list(argv))
        share_metrics()
        supervise(proxy, sock)
    else:
        serve_app(create_app(proxy, after_start=settle_after_start), proxy, sock)


def plugins_command(argv: Sequence[str]) -> None:
    proxy, _values = _load(argv, "hookproxy plugins",
                           "List the installed plugins (name, distribution, hooks) and the state of every "
                           "backend the configuration defines. Takes the same flags as 'hookproxy'.")
    for info in list_plugins(proxy.pm):
        version = f" {info.version}" if info.version else ""
        dist = f" ({info.distribution}{version})" if info.distribution else ""
        print(f"{info.name}{dist}: hooks {', '.join(info.hooks) or 'none'}")
    print("backends:")
    print("\n".join(_describe_backends(proxy)) or "  none configured")


def main(argv: Sequence[str] | None = None) -> None:
    from .cli_commands import check_command, demo_command, init_command

    commands: dict[str, Callable[[Sequence[str]], None]] = {
        "plugins": plugins_command, "check": check_command, "init": init_command, "demo": demo_command,
    }
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--version"]:
        print(f"hookproxy {__version__}")
        return
    command = commands.get(args[0]) if args else None
    try:
        if command is not None:
            command(args[1:])
        else:
            serve(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # `hookproxy plugins | head`: the reader left; end quietly, as other Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

