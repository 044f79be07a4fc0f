"""Model selectors: ``[backend:]model[?query]``, ``a:m1|b:m2`` chains and URI parameters.

The grammar, as the README documents it: the backend is explicit only when the first ``:`` comes
before the first ``/``; the query is everything after the first ``?`` and is parsed with URL
rules (last value wins, blanks dropped); the upstream sees the model without prefix or query.
A bracketed model (``hybrid:[a:m?x=1,b:n]``) is passed intact to the backend that claims it.
Invalid URI parameters never fail a request: they are dropped with a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from .errors import InvalidRequest

log = logging.getLogger("hookproxy.routing")


@dataclass(frozen=True)
class Route:
    """One parsed selector.

    ``backend`` is the name as the client wrote it (``None``: use the default backend);
    ``model`` is what the upstream will see; ``params`` are the validated URI parameters,
    which beat the same fields in the request body.
    """

    backend: str | None
    model: str
    params: Mapping[str, Any] = field(default_factory=dict)
    raw: str = ""

    def __str__(self) -> str:
        return self.raw or (f"{self.backend}:{self.model}" if self.backend else self.model)


def _float_in(low: float, high: float) -> Callable[[str], float]:
    def coerce(value: str) -> float:
        number = float(value)
        if number < low:
            raise ValueError(f"{value} below minimum value ({low})")
        if number > high:
            raise ValueError(f"{value} above maximum value ({high})")
        return number

    return coerce


def _positive_int(value: str) -> int:
    number = float(value)
    if number != int(number):
        raise ValueError(f"{value} is not a whole number")
    if number < 1:
        raise ValueError(f"{value} below minimum value (1)")
    return int(number)


def _one_of(*allowed: str) -> Callable[[str], str]:
    def coerce(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return value

    return coerce


URI_PARAMS: dict[str, Callable[[str], Any]] = {
    "temperature": _float_in(0.0, 2.0),
    "top_p": _float_in(0.0, 1.0),
    "top_k": _positive_int,
    "reasoning_effort": _one_of("none", "low", "medium", "high", "xhigh", "max"),
    "verbosity": _one_of("low", "medium", "high"),
}


def parse_params(query: str, *, where: str = "") -> dict[str, Any]:
    """Validate URI parameters; unknown or invalid ones are dropped with a warning."""
    if "=" not in query:
        if query:
            log.warning("URI parameters %r%s have no key=value pair; ignored", query, where)
        return {}
    params: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=False):
        coerce = URI_PARAMS.get(key)
        if coerce is None:
            log.warning("Unknown URI parameter %r%s dropped; known: %s", key, where, ", ".join(URI_PARAMS))
            continue
        try:
            params[key] = coerce(value)
        except ValueError as exc:
            log.warning("URI parameter %s%s dropped: %s", key, where, exc)
    return params


def split_top_level(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside square brackets, so ``hybrid:[a|b]`` stays whole."""
    if sep not in text:
        return [text]
    if "[" not in text:
        return text.split(sep)
    parts: list[str] = []
    depth = 0
    start = 0
    for index, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth = max(0, depth - 1)
        elif char == sep and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def parse_route(selector: str) -> Route:
    """Parse one ``[backend:]model[?query]`` selector (no ``|``)."""
    text = selector.strip()
    if not text:
        raise InvalidRequest("model must be a non-empty string", param="model", code="invalid_model")
    backend: str | None = None
    colon, slash = text.find(":"), text.find("/")
    bracket = text.find("[")
    if colon > 0 and (slash < 0 or colon < slash) and (bracket < 0 or colon < bracket):
        backend, rest = text[:colon].strip(), text[colon + 1 :].strip()
    else:
        rest = text
    if rest.startswith("["):
        # A bracketed spec belongs to its backend whole: no query split, no inner parsing.
        return Route(backend=backend, model=rest, params={}, raw=text)
    model, _, query = rest.partition("?")
    model = model.strip()
    if not model:
        raise InvalidRequest(f"model selector {selector!r} names no model", param="model", code="invalid_model")
    params = parse_params(query, where=f" in model {selector!r}") if query else {}
    return Route(backend=backend, model=model, params=params, raw=text)


def parse_chain(selector: str) -> list[Route]:
    """Parse ``a:m1|b:m2|c:m3`` into ordered failover candidates (a single selector gives one)."""
    parts = split_top_level(selector, "|")
    if len(parts) > 1 and any(not part.strip() for part in parts):
        raise InvalidRequest(f"model selector {selector!r} has an empty element", param="model")
    return [parse_route(part) for part in parts]
