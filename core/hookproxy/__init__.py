"""hookproxy: a plugin-based LLM proxy.

This module is the public plugin API: the ``hookimpl`` marker, the backend and front-end base
classes, the objects hooks receive, and the error tree. Plugins may also import these
documented modules: ``hookproxy.hookspecs`` (the hooks), ``hookproxy.errors`` (the error tree),
``hookproxy.frontend`` (front ends), ``hookproxy.observe`` (observer events),
``hookproxy.sse`` (parsing and encoding events), ``hookproxy.routing`` (selector and
URI-parameter parsing), ``hookproxy.upstream_errors`` (reading upstream error answers),
``hookproxy.state`` (the state shared between workers and hosts, reached as ``proxy.state``) and
``hookproxy.testing`` (the test kit). Everything else is internal and may change without notice.
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
from .frontend import OPENAI_CHAT, ClientRequest, Endpoint, Frontend, HTTPRequest, JSONAnswer
from .hookspecs import hookimpl
from .observe import AttemptEnded, RequestEnded, Usage
from .proxy import Proxy
from .retry_after import parse_retry_after
from .sse import DONE, SSEEvent, SSEParser, UpstreamStream, encode_comment, encode_event
from .state import SharedState, Table
from .streamcheck import BadStream

__version__ = "0.1.0"

__all__ = [
    "AttemptEnded",
    "RequestEnded",
    "Usage",
    "DONE",
    "OPENAI_CHAT",
    "ClientRequest",
    "Endpoint",
    "Frontend",
    "HTTPRequest",
    "JSONAnswer",
    "AuthenticationFailed",
    "BadStream",
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
    "for_backends",
    "hookimpl",
    "parse_retry_after",
]
