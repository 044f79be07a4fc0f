"""``--workers N``: N processes serving one port, supervised by uvicorn.

The parent validates the whole configuration once (``cli.serve``) and then hands the same
command line to each worker through :data:`ARGV_ENV`; every worker builds its own proxy (plugins
load in each process, nothing is inherited across the spawn). uvicorn's supervisor shares the
listening socket, forwards SIGTERM to every worker (each drains within
``shutdown_grace_period``) and replaces a worker that dies, logging its pid. Each worker serves
with the same guarded HTTP protocol (head and body limits, connection cap) as a single process;
uvicorn loads it by name, :data:`WorkerHttpProtocol`, which builds the worker's proxy first.

Without ``state: redis://...`` each worker keeps its own backoff, cooldowns and throttles.
``/metrics`` reports the whole server: :func:`share_metrics` gives the workers one folder for
prometheus-client's multiprocess mode before they start.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import socket
import tempfile
from typing import TYPE_CHECKING, Any

from .proxy import Proxy

if TYPE_CHECKING:
    from .app import HookproxyApp

#: The validated command line, passed from the parent to every worker.
ARGV_ENV = "HOOKPROXY_WORKER_ARGV"

_proxy: Proxy | None = None


def share_metrics() -> None:
    """Point the workers' metrics at one private folder (removed at exit) unless one is set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    folder = tempfile.mkdtemp(prefix="hookproxy-metrics-")
    atexit.register(shutil.rmtree, folder, True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder


def supervise(proxy: Proxy, sock: socket.socket) -> None:
    """Run ``proxy.settings.workers`` workers on ``sock`` until SIGTERM (in the parent)."""
    from uvicorn.supervisors import Multiprocess

    from .server import uvicorn_config

    config = uvicorn_config("hookproxy.workers:worker_app", proxy, sock.getsockname()[1])
    config.factory = True
    config.workers = proxy.settings.workers
    config.http = "hookproxy.workers:WorkerHttpProtocol"
    Multiprocess(config, sockets=[sock]).run()


def worker_proxy() -> Proxy:
    """This worker's proxy, built once from the command line the parent validated."""
    global _proxy
    if _proxy is None:
        from .cli import load_proxy, setup_logging
        from .server import raise_fd_limit

        _proxy = load_proxy(json.loads(os.environ.get(ARGV_ENV, "[]")))
        setup_logging(_proxy.settings.log_level, _proxy.settings.log_file)
        raise_fd_limit(_proxy.settings)
    return _proxy


def worker_app() -> HookproxyApp:
    """The uvicorn factory each worker calls: the same configuration the parent validated."""
    from .app import create_app
    from .cli import settle_after_start

    proxy = worker_proxy()
    logging.getLogger("hookproxy").info("worker %d serving", os.getpid())
    return create_app(proxy, after_start=settle_after_start)


def __getattr__(name: str) -> Any:
    """``WorkerHttpProtocol``: the guarded protocol bound to this worker's settings (by name)."""
    if name == "WorkerHttpProtocol":
        from .server import protocol_class

        proxy = worker_proxy()
        return protocol_class(proxy.settings, proxy)
    raise AttributeError(name)
