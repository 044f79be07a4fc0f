"""hookproxy: a plugin-based, OpenAI-compatible LLM proxy.

This module is the public plugin API: the ``hookimpl`` marker, the backend base classes and
the objects hooks receive, and the error tree. Everything else is internal.
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
from .backend_hooks import for_backends
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
    "UpstreamError",
    "UpstreamRequest",
    "UpstreamStream",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "encode_comment",
    "encode_event",
    "for_backends",
    "hookimpl",
    "parse_retry_after",
]
