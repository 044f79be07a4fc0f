"""The request body qwen-oauth sends upstream, cleaned the way the original connector did.

Why: clients (and SDK wrappers) send fields the Qwen service rejects or misreads: explicit
``null`` values, ``top_p``/``top_k`` as strings, and a literal ``extra_body`` object (what the
openai SDK's ``extra_body=`` argument means, written into a raw JSON body by hand). The original
connector fixed these before sending, and users' agents rely on it.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("hookproxy.qwen_oauth")

THINK_SUFFIX = " /think"


def clean_payload(body: dict[str, Any]) -> dict[str, Any]:
    """A new body: ``extra_body`` merged into the top level (its keys win), ``None`` values
    dropped, ``top_p`` as a float and ``top_k`` as an int (a non-numeric one is dropped)."""
    payload = dict(body)
    extra = payload.pop("extra_body", None)
    if isinstance(extra, dict):
        payload.update(extra)
    payload = {key: value for key, value in payload.items() if value is not None}
    for key, kind in (("top_p", float), ("top_k", int)):
        if key in payload:
            number = _number(payload[key], kind)
            if number is None:
                log.debug("dropping %s=%r: not a number", key, payload[key])
                del payload[key]
            else:
                payload[key] = number
    return payload


def _number(value: Any, kind: type[float] | type[int]) -> float | int | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number != number or number in (float("inf"), float("-inf")):
        return None
    return int(number) if kind is int else number


def add_think_switch(payload: dict[str, Any]) -> None:
    """Qwen's soft switch: append `` /think`` to the last user or system message's text.

    Skipped when ``reasoning_effort`` is ``low``, when that message's content is not a string
    (multimodal parts are left alone), or when it already ends with the switch. The client's
    message objects are never changed: the list and the one message are copied.
    """
    if payload.get("reasoning_effort") == "low":
        return
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if not isinstance(message, dict) or message.get("role") not in ("user", "system"):
            continue
        content = message.get("content")
        if isinstance(content, str) and not content.endswith(THINK_SUFFIX):
            copied = list(messages)
            copied[index] = {**message, "content": content + THINK_SUFFIX}
            payload["messages"] = copied
        return
