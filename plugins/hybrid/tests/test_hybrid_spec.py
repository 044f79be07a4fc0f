"""The model-spec grammar, case by case."""

from __future__ import annotations

import dataclasses

import pytest

from hookproxy_hybrid.spec import Side, parse_spec


def test_the_seed_example_parses():
    spec = parse_spec("hybrid:[minimax:MiniMax-M2,qwen-oauth:qwen3-coder-plus]")
    assert spec.reasoning == Side("minimax", "MiniMax-M2")
    assert spec.execution == Side("qwen-oauth", "qwen3-coder-plus")
    assert spec.reasoning.selector == "minimax:MiniMax-M2"


def test_prefix_is_optional_and_whitespace_is_trimmed():
    spec = parse_spec("hybrid:[ openai : gpt-4 , anthropic : claude-3 ]")
    assert (spec.reasoning.backend, spec.reasoning.model) == ("openai", "gpt-4")
    assert (spec.execution.backend, spec.execution.model) == ("anthropic", "claude-3")
    assert parse_spec("[a:b,c:d]").execution == Side("c", "d")


def test_commas_inside_a_query_stay_in_the_value():
    spec = parse_spec("hybrid:[openai:gpt-4?param=value1,value2,anthropic:claude-3?other=test]")
    assert spec.reasoning.params == (("param", "value1,value2"),)
    assert spec.execution.params == (("other", "test"),)
    assert spec.execution.model == "claude-3"


def test_query_values_stay_strings_decoded_blanks_dropped_last_wins():
    spec = parse_spec("[a:org/model-1.5?temperature=0.8&stop=%2C+x&invalid=&temperature=0.9,b:c]")
    assert spec.reasoning.model == "org/model-1.5"
    assert dict(spec.reasoning.params) == {"temperature": "0.9", "stop": ", x"}


def test_the_parsed_spec_is_immutable():
    spec = parse_spec("[a:b,c:d]")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.reasoning.model = "x"  # type: ignore[misc]


@pytest.mark.parametrize("text", ["", "minimax", "[a:b,c:d", "a:b,c:d]", "hybrid:a:b,c:d"])
def test_unbracketed_specs_name_the_expected_form(text):
    with pytest.raises(ValueError, match="Invalid hybrid model format") as error:
        parse_spec(text)
    assert "hybrid:[minimax:MiniMax-M2,qwen-oauth:qwen3-coder-plus]" in str(error.value)


@pytest.mark.parametrize(("text", "count"), [
    ("[openai:gpt-4]", 1), ("[a:b,c:d,e:f]", 3), ("[openai,anthropic:claude-3]", 1),
])
def test_exactly_two_parts(text, count):
    with pytest.raises(ValueError, match=f"Expected exactly 2 models separated by comma, got {count}"):
        parse_spec(text)


@pytest.mark.parametrize(("text", "phase"), [
    ("[:gpt-4,anthropic:claude-3]", "reasoning"),
    ("[openai:,anthropic:claude-3]", "reasoning"),
    ("[openai:gpt-4,:claude-3]", "execution"),
    ("[openai:gpt-4,anthropic:]", "execution"),
    ("[openai:gpt-4,anthropic]", "execution"),
    ("[openai:gpt-4,]", "execution"),
])
def test_incomplete_sides(text, phase):
    with pytest.raises(ValueError, match=f"Incomplete {phase} model specification.*Both backend and model"):
        parse_spec(text)
