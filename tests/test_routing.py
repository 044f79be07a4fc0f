"""Selector grammar, failover chains and bracketed specs."""

from __future__ import annotations

import pytest

from hookproxy.errors import InvalidRequest
from hookproxy.routing import parse_chain, parse_route


@pytest.mark.parametrize(
    ("selector", "backend", "model"),
    [
        ("gpt-4o", None, "gpt-4o"),
        ("openai:gpt-4o", "openai", "gpt-4o"),
        ("openrouter:anthropic/claude-3-haiku:beta?temperature=0.3", "openrouter", "anthropic/claude-3-haiku:beta"),
        ("vendor/model:free", None, "vendor/model:free"),
        ("qwen-oauth.default:coder-model", "qwen-oauth.default", "coder-model"),
    ],
)
def test_backend_is_explicit_only_before_the_first_slash(selector, backend, model):
    route = parse_route(selector)
    assert (route.backend, route.model) == (backend, model)


def test_query_params_are_coerced_and_the_last_value_wins():
    route = parse_route("b:m?temperature=0.1&temperature=0.2&top_p=1&top_k=40.0&verbosity=low&reasoning_effort=high")
    assert route.params == {"temperature": 0.2, "top_p": 1.0, "top_k": 40, "verbosity": "low",
                            "reasoning_effort": "high"}


@pytest.mark.parametrize("query", ["temperature=2.5", "top_p=-1", "top_k=40.5", "top_k=0", "reasoning_effort=HIGH",
                                   "verbosity=loud", "unknown=1", "temperature=", "temperature"])
def test_invalid_params_are_dropped(query):
    assert parse_route(f"b:m?{query}").params == {}


def test_bracketed_spec_reaches_its_backend_intact():
    route = parse_route("hybrid:[a:m?x=1,2,b:n?temperature=0.2]")
    assert route.backend == "hybrid"
    assert route.model == "[a:m?x=1,2,b:n?temperature=0.2]"
    assert route.params == {}


def test_failover_chain_splits_outside_brackets_only():
    chain = parse_chain("a:m1|hybrid:[x:y|z,c:d]|b")
    assert [(r.backend, r.model) for r in chain] == [("a", "m1"), ("hybrid", "[x:y|z,c:d]"), (None, "b")]


@pytest.mark.parametrize("selector", ["", "a:", "a:m|", "b:?temperature=1"])
def test_empty_selectors_are_400(selector):
    with pytest.raises(InvalidRequest):
        parse_chain(selector)
