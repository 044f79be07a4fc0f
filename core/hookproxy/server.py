"""The HTTP server: uvicorn's server loop, configured for hostile clients.

uvicorn runs the sockets, the workers' signals and graceful shutdown; each client connection is
served by :class:`~hookproxy.http_protocol.HttpProtocol` (head and body caps and clocks, the
connection cap, one write per answer) rather than uvicorn's own protocol. ``X-Forwarded-For`` is
believed only from ``trusted_proxies`` (uvicorn's proxy headers are off without them), so a
client cannot pick the address the bad-key throttle sees.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import resource
import socket
from typing import Any

import uvicorn

from .config import Settings
from .http_protocol import ConnectionPool, HttpProtocol
from .proxy import Proxy

log = logging.getLogger("hookproxy.server")

#: File descriptors kept free for upstream connections, log files and the like.
_SPARE_FDS = 64


def protocol_class(settings: Settings, proxy: Proxy | None = None) -> type[HttpProtocol]:
    """A protocol class bound to ``settings`` and to a fresh connection pool (one per server).

    With ``proxy``, the start of a graceful shutdown (uvicorn asks every connection to finish,
    in a single process and in each ``--workers`` worker alike) schedules the end of the streams
    still running when ``shutdown_grace_period`` is over: each gets one error event
    (``Proxy.end_streams``) before uvicorn cancels what is left.
    """
    on_shutdown = None if proxy is None else functools.partial(_end_streams_after_grace, proxy)
    return type("BoundHttpProtocol", (HttpProtocol,), {"settings": settings, "pool": ConnectionPool(on_shutdown)})


def _end_streams_after_grace(proxy: Proxy) -> None:
    asyncio.get_running_loop().call_later(proxy.settings.shutdown_grace_period, proxy.end_streams)


def raise_fd_limit(settings: Settings) -> None:
    """Lift the soft file-descriptor limit so ``max_connections`` clients and their upstream
    connections fit; warn when the hard limit is too low for that."""
    wanted = 2 * settings.max_connections + _SPARE_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted or soft == resource.RLIM_INFINITY:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        target = soft
    if target < wanted:
        log.warning("the file descriptor limit (%d) is below what max_connections=%d needs (%d); "
                    "raise it with ulimit -n or lower max_connections", target, settings.max_connections, wanted)


def uvicorn_config(app: Any, proxy: Proxy, port: int | None = None) -> uvicorn.Config:
    """uvicorn's configuration for serving ``app`` with the proxy's limits."""
    settings = proxy.settings
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port if port is None else port,
        loop="auto",
        http=protocol_class(settings, proxy),
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_keep_alive=max(1, math.ceil(settings.keep_alive_timeout)),  # unused by HttpProtocol
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies),
        server_header=False,
        # SIGTERM: stop accepting, let in-flight requests and streams finish within the grace
        # period, then end the streams still running with an error event (Proxy.end_streams) and
        # give them a moment to flush before uvicorn cancels what is left.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_period) + 2,
    )


def serve(app: Any, proxy: Proxy, sock: socket.socket) -> None:
    """Serve ``app`` on the already bound ``sock`` (the CLI binds first to report a busy port)."""
    raise_fd_limit(proxy.settings)
    uvicorn.Server(uvicorn_config(app, proxy, sock.getsockname()[1])).run(sockets=[sock])
