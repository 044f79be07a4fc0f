"""What both directions share: the protocol name, error types by status, stop reasons, usage.

Anthropic's error body is ``{"type": "error", "error": {"type", "message"}}``, and its error
type follows the HTTP status; an overloaded upstream (503, or Anthropic's own 529) is a 529
``overloaded_error``, the status Claude Code retries as "overloaded".
"""

from __future__ import annotations

from typing import Any

import orjson

#: The wire protocol name of Anthropic Messages replies (``Reply.protocol``, ``Frontend.protocol``).
ANTHROPIC = "anthropic-messages"
DEFAULT_VERSION = "2023-06-01"

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
#: Anthropic error types back to statuses (an ``event: error`` carries a type but no status).
STATUS_OF_TYPE = {kind: status for status, kind in ERROR_TYPES.items() if status != 502}
STATUS_OF_TYPE["overloaded_error"] = 529


def client_status(status: int) -> int:
    """The status an Anthropic client sees: an overloaded upstream is 529, the rest unchanged."""
    return 529 if status in (503, 529) else status


def error_type(status: int) -> str:
    status = client_status(status)
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "invalid_request_error" if status < 500 else "api_error"


def error_document(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def event(kind: str, data: dict[str, Any]) -> bytes:
    """One Anthropic SSE event: ``event: <type>`` and its JSON ``data`` (which repeats the type).

    Built directly (compact JSON never holds a newline, so one ``data:`` line is always right):
    this runs for every delta of every translated stream."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


PING = b'event: ping\ndata: {"type":"ping"}\n\n'

#: OpenAI ``finish_reason`` to Anthropic ``stop_reason`` (``stop`` may become ``stop_sequence``).
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}
#: And back, for OpenAI clients of an Anthropic backend.
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "refusal": "content_filter", "pause_turn": "stop", "model_context_window_exceeded": "length"}


def anthropic_usage(usage: Any) -> dict[str, int]:
    """OpenAI usage as Anthropic's: ``input_tokens`` excludes cached tokens, which are
    ``cache_read_input_tokens`` (OpenAI ``prompt_tokens_details.cached_tokens``, DeepSeek
    ``prompt_cache_hit_tokens``)."""
    if not isinstance(usage, dict):
        return {"input_tokens": 0, "output_tokens": 0}
    prompt = _int(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    if not cached and "prompt_cache_hit_tokens" in usage:
        cached = _int(usage["prompt_cache_hit_tokens"])
    if cached > prompt:
        cached = prompt
    return {"input_tokens": prompt - cached, "output_tokens": _int(usage.get("completion_tokens")),
            "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}


def openai_usage(usage: Any) -> dict[str, Any]:
    """Anthropic usage as OpenAI's: prompt tokens count cached and cache-written tokens too."""
    if not isinstance(usage, dict):
        usage = {}
    cached = _int(usage.get("cache_read_input_tokens"))
    prompt = _int(usage.get("input_tokens")) + cached + _int(usage.get("cache_creation_input_tokens"))
    completion = _int(usage.get("output_tokens"))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def _int(value: Any) -> int:
    """A token count: a positive integer, else 0 (``True`` is no count)."""
    if value.__class__ is int:  # what JSON counts are: one check instead of two isinstance calls
        return value if value > 0 else 0
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def loads(raw: bytes | str) -> Any:
    """Parse JSON; ``None`` when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
