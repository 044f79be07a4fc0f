"""The hybrid model-spec grammar: ``hybrid:[<rb>:<rm>[?q],<eb>:<em>[?q]]``.

The core hands the bracketed remainder to this plugin untouched, so every comma, colon and
``?`` inside is ours to interpret. Splitting follows the plugin's README: a comma separates the two sides
only once the current side has its ``backend:``, and inside a query a comma separates only
when the text after it starts a new ``backend:`` (so ``?stop=a,b`` stays one value). Errors are
``ValueError`` with messages that name the problem; the backend turns them into a 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

PREFIX = "hybrid:"
FORMAT_HELP = (
    "Expected format: hybrid:[reasoning_backend:reasoning_model,execution_backend:execution_model], "
    "e.g. hybrid:[minimax:MiniMax-M2,qwen-oauth:qwen3-coder-plus]"
)


@dataclass(frozen=True)
class Side:
    """One phase's target: backend name, model and its raw URI query (validated per phase later).

    ``params`` keeps the query as strings, decoded, blanks dropped, last value winning;
    it is a tuple of pairs so the parsed spec stays immutable.
    """

    backend: str
    model: str
    query: str = ""
    params: tuple[tuple[str, str], ...] = ()

    @property
    def selector(self) -> str:
        """The ``backend:model`` selector the core routes (the query is applied by the plugin)."""
        return f"{self.backend}:{self.model}"


@dataclass(frozen=True)
class HybridSpec:
    reasoning: Side
    execution: Side


def parse_spec(text: str) -> HybridSpec:
    """Parse a hybrid spec; the ``hybrid:`` prefix is optional and whitespace is trimmed."""
    body = (text or "").strip()
    if body.startswith(PREFIX):
        body = body[len(PREFIX) :].strip()
    if not (body.startswith("[") and body.endswith("]")):
        raise ValueError(f"Invalid hybrid model format: {text!r}. {FORMAT_HELP}")
    parts = split_sides(body[1:-1])
    if len(parts) != 2:
        raise ValueError(
            f"Invalid hybrid model format: Expected exactly 2 models separated by comma, got {len(parts)}. "
            f"{FORMAT_HELP}"
        )
    return HybridSpec(_side(parts[0], "reasoning"), _side(parts[1], "execution"))


def split_sides(inner: str) -> list[str]:
    """Split the bracket contents into sides by the comma rules above."""
    parts: list[str] = []
    current = ""
    for index, char in enumerate(inner):
        if char == "," and ":" in current and _starts_new_side(current, inner[index + 1 :]):
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _starts_new_side(current: str, rest: str) -> bool:
    if "?" not in current:
        return True
    colon = rest.find(":")
    return colon >= 0 and "," not in rest[:colon]


def _side(part: str, phase: str) -> Side:
    backend, colon, rest = part.partition(":")
    model, _, query = rest.partition("?")
    backend, model, query = backend.strip(), model.strip(), query.strip()
    if not colon or not backend or not model:
        raise ValueError(
            f"Incomplete {phase} model specification {part.strip()!r}: Both backend and model must be non-empty. "
            f"{FORMAT_HELP}"
        )
    params = dict(parse_qsl(query, keep_blank_values=False))
    return Side(backend=backend, model=model, query=query, params=tuple(params.items()))
