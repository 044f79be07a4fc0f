"""hookproxy: a plugin-based, OpenAI-compatible LLM proxy.

This module is the public plugin API: the ``hookimpl`` marker, the backend base classes and
the objects hooks receive, the error tree, and the shared-state API plugins reach through
``proxy.state`` (:mod:`hookproxy.state`). Everything else is internal.
"""

from .backend import (
    Backend,
    BackendInstance,
    ChatCall,
    Health,
    HTTPBackend,
    Reply,
    RetryDecision,
    UpstreamRequest,
)
from .errors import (
    AuthenticationFailed,
    ConfigError,
    InvalidRequest,
    PermissionDenied,
    ProxyError,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from .hookspecs import hookimpl
from .proxy import Proxy
from .retry_after import parse_retry_after
from .sse import DONE, SSEEvent, SSEParser, UpstreamStream, encode_comment, encode_event
from .state import SharedState, Table

__version__ = "0.1.0"

__all__ = [
    "DONE",
    "AuthenticationFailed",
    "Backend",
    "BackendInstance",
    "ChatCall",
    "ConfigError",
    "HTTPBackend",
    "Health",
    "InvalidRequest",
    "PermissionDenied",
    "Proxy",
    "ProxyError",
    "RateLimited",
    "Reply",
    "RetryDecision",
    "SSEEvent",
    "SSEParser",
    "SharedState",
    "Table",
    "UpstreamError",
    "UpstreamRequest",
    "UpstreamStream",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "encode_comment",
    "encode_event",
    "hookimpl",
    "parse_retry_after",
]
