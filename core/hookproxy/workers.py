"""``--workers N``: N processes serving one port, supervised by uvicorn.

The parent validates the whole configuration once (``cli.serve``) and then hands the same
command line to each worker through :data:`ARGV_ENV`; every worker builds its own proxy (plugins
load in each process, no state is inherited across the fork). uvicorn's supervisor shares the
listening socket, forwards SIGTERM to every worker (each drains within
``shutdown_grace_period``) and replaces a worker that dies, logging its pid.

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
import tempfile

from fastapi import FastAPI

#: The validated command line, passed from the parent to every worker.
ARGV_ENV = "HOOKPROXY_WORKER_ARGV"


def share_metrics() -> None:
    """Point the workers' metrics at one private folder (removed at exit) unless one is set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    folder = tempfile.mkdtemp(prefix="hookproxy-metrics-")
    atexit.register(shutil.rmtree, folder, True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder


def worker_app() -> FastAPI:
    """The uvicorn factory each worker calls: the same configuration the parent validated."""
    from .app import create_app
    from .cli import load_proxy, setup_logging

    argv = json.loads(os.environ.get(ARGV_ENV, "[]"))
    proxy = load_proxy(argv)
    setup_logging(proxy.settings.log_level, proxy.settings.log_file)
    logging.getLogger("hookproxy").info("worker %d serving", os.getpid())
    return create_app(proxy)
