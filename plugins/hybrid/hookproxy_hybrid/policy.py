"""Settings, per-backend presets and the run-reasoning-or-not decision.

Presets, tag styles and system-message support are keyed by backend *kind*.
A hybrid side names a backend instance, so the kind is the first of these that has an
entry in a table: the name the user wrote in the spec (``minimax``), the instance's own name
(``openai-compatible.minimax`` -> ``minimax``), then its connector (``qwen-oauth``). That lets
an ``openai-compatible`` block named ``minimax`` get MiniMax's presets, and a qwen-oauth
instance named ``work`` still get qwen's.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger("hookproxy.hybrid")

PROBABILITY_OVERRIDE = "_temp_hybrid_reasoning_probability"


class HybridSettings(BaseModel):
    """The hybrid's settings (the plugin README lists them); the core makes flags, env vars and YAML keys."""

    model_config = ConfigDict(extra="forbid")

    disable_hybrid_backend: bool = Field(False, description="refuse hybrid:[...] requests (400)",
                                         json_schema_extra={"env_aliases": ["DISABLE_HYBRID_BACKEND"]})
    hybrid_backend_repeat_messages: bool = Field(
        False, description="also append the reasoning as an assistant message for the execution model",
        json_schema_extra={"env_aliases": ["HYBRID_BACKEND_REPEAT_MESSAGES"]},
    )
    reasoning_injection_probability: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="chance of running the reasoning model after the forced initial turns (0 = never)",
        json_schema_extra={"cli_aliases": ["--reasoning_injection_probability"],
                           "env_aliases": ["REASONING_INJECTION_PROBABILITY"]},
    )
    hybrid_reasoning_model_timeout: int = Field(
        60, ge=1, description="seconds for the whole reasoning capture; on timeout answer without reasoning",
        json_schema_extra={"env_aliases": ["HYBRID_REASONING_MODEL_TIMEOUT"]},
    )
    hybrid_reasoning_force_initial_turns: int = Field(
        4, ge=0, description="always reason while the request has at most this many user messages",
        json_schema_extra={"env_aliases": ["HYBRID_REASONING_FORCE_INITIAL_TURNS"]},
    )
    hybrid_execution_model_timeout: int = Field(
        120, ge=1, description="seconds for the execution model to answer (to its first byte when streaming)",
        json_schema_extra={"env_aliases": ["HYBRID_EXECUTION_MODEL_TIMEOUT"]},
    )
    hybrid_reasoning_latency_threshold: float = Field(
        8.0, ge=0.0, description="reasoning slower than this (s) skips the next turns of a conversation; 0 = off",
        json_schema_extra={"env_aliases": ["HYBRID_REASONING_LATENCY_THRESHOLD"]},
    )
    hybrid_reasoning_backoff_turns: int = Field(
        2, ge=0, description="turns skipped after a slow reasoning phase",
        json_schema_extra={"env_aliases": ["HYBRID_REASONING_BACKOFF_TURNS"]},
    )


REASONING_PRESETS: dict[str, dict[str, Any]] = {
    "openai": {"reasoning_effort": "high"},
    "deepseek": {"reasoning_effort": "high"},
    "qwen": {"thinking_budget": 10000},
    "qwen-oauth": {"thinking_budget": 10000},
    "minimax": {},
}
REASONING_DEFAULT: dict[str, Any] = {"temperature": 0.7, "reasoning_effort": "high"}

EXECUTION_PRESETS: dict[str, dict[str, Any]] = {
    "openai": {"reasoning_effort": "low"},
    "deepseek": {"reasoning_effort": "low"},
    "qwen": {"thinking_budget": 0},
    "qwen-oauth": {"thinking_budget": 0},
    "minimax": {"temperature": 0.3},
}
EXECUTION_DEFAULT: dict[str, Any] = {"temperature": 0.5, "reasoning_effort": "low"}

GEMINI = ("gemini", "gemini-oauth-free", "gemini-oauth-plan", "gemini-cli-oauth-personal", "gemini-cloud-project")
TAGS: dict[str, str] = {
    "deepseek": "think",
    "minimax": "think",
    "openai": "thinking",
    "anthropic": "thinking",
    "qwen": "thinking",
    "qwen-oauth": "thinking",
    **{name: "thinking" for name in GEMINI},
}
DEFAULT_TAG = "reasoning"
NO_SYSTEM_MESSAGES = frozenset({*GEMINI, "antigravity-oauth", "kiro-oauth-auto"})
INCOMPATIBLE_REASONING = frozenset({"gemini-oauth-plan", "gemini-oauth-free", "antigravity-oauth"})


def pick(kinds: Sequence[str], table: Mapping[str, Any], default: Any) -> Any:
    """The table entry of the first kind that has one (see the module docstring)."""
    for kind in kinds:
        if kind in table:
            return table[kind]
    return default


def supports_system(kinds: Sequence[str]) -> bool:
    return not any(kind in NO_SYSTEM_MESSAGES for kind in kinds)


@dataclass(frozen=True)
class Decision:
    """Whether to run the reasoning phase, and why (shown in the ``x-hookproxy-hybrid`` header)."""

    run: bool
    reason: str


def user_turns(messages: Sequence[Any]) -> int:
    """A stateless proxy counts the ``user`` messages of the request."""
    return sum(1 for message in messages if isinstance(message, dict) and message.get("role") == "user")


def request_probability(body: Mapping[str, Any], default: float) -> float:
    """The per-request override ``extra_body._temp_hybrid_reasoning_probability`` (or top level, as SDKs flatten it)."""
    extra = body.get("extra_body")
    raw = extra.get(PROBABILITY_OVERRIDE) if isinstance(extra, dict) else None
    if raw is None:
        raw = body.get(PROBABILITY_OVERRIDE)
    if raw is None:
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = -1.0
    if not 0.0 <= value <= 1.0:
        log.warning("ignoring %s=%r: not a number in [0, 1]", PROBABILITY_OVERRIDE, raw)
        return default
    return value


def decide(
    messages: Sequence[Any],
    probability: float,
    force_initial_turns: int,
    *,
    backoff: Callable[[], bool] = lambda: False,
    rng: Callable[[], float] = random.random,
) -> Decision:
    """Run iff p > 0 and (turns <= forced turns or random() < p).

    ``backoff`` is asked only for non-forced turns, since asking uses up a skip.
    """
    if probability <= 0.0:
        return Decision(False, "probability")
    if user_turns(messages) <= force_initial_turns:
        return Decision(True, "initial_turns")
    if backoff():
        return Decision(False, "latency_backoff")
    if rng() < probability:
        return Decision(True, "probability")
    return Decision(False, "probability")


class LatencyBackoff:
    """Adaptive backoff after slow reasoning, per conversation rather than per connector.

    The proxy is stateless, so a conversation is recognised by its system prompt and first user
    message, which stay the same while the history grows. Bounded, oldest forgotten first.
    """

    def __init__(self, size: int = 4096) -> None:
        self._skips: OrderedDict[str, int] = OrderedDict()
        self._size = size

    @staticmethod
    def key(messages: Sequence[Any]) -> str:
        head = [m for m in messages if isinstance(m, dict) and m.get("role") in ("system", "user")][:2]
        return hashlib.sha256(orjson.dumps(head, default=str)).hexdigest()

    def use_skip(self, key: str) -> bool:
        remaining = self._skips.get(key, 0)
        if remaining <= 0:
            return False
        self._skips[key] = remaining - 1
        return True

    def record(self, key: str, latency: float, settings: HybridSettings) -> None:
        threshold = settings.hybrid_reasoning_latency_threshold
        if threshold > 0 and settings.hybrid_reasoning_backoff_turns > 0 and latency > threshold:
            self._skips[key] = self._skips.get(key, 0) + settings.hybrid_reasoning_backoff_turns
            self._skips.move_to_end(key)
            while len(self._skips) > self._size:
                self._skips.popitem(last=False)
        else:
            self._skips.pop(key, None)
