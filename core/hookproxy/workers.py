"""``--workers N``: N processes serving one port, supervised by uvicorn.

The parent validates the whole configuration once (``cli.serve``) and then hands the same
command line to each worker through :data:`ARGV_ENV`; every worker builds its own proxy (plugins
load in each process, no state is inherited across the fork). uvicorn's supervisor shares the
listening socket, forwards SIGTERM to every worker (each drains within
``shutdown_grace_period``) and replaces a worker that dies, logging its pid.

Without ``state: redis://...`` each worker keeps its own backoff, cooldowns and throttles.
"""

from __future__ import annotations

import json
import logging
import os

from fastapi import FastAPI

#: The validated command line, passed from the parent to every worker.
ARGV_ENV = "HOOKPROXY_WORKER_ARGV"


def worker_app() -> FastAPI:
    """The uvicorn factory each worker calls: the same configuration the parent validated."""
    from .app import create_app
    from .cli import load_proxy, setup_logging

    argv = json.loads(os.environ.get(ARGV_ENV, "[]"))
    proxy = load_proxy(argv)
    setup_logging(proxy.settings.log_level, proxy.settings.log_file)
    logging.getLogger("hookproxy").info("worker %d serving", os.getpid())
    return create_app(proxy)
