"""Claude Code asks for 32000 output tokens; a backend instance's ``max_output_tokens`` lowers
that to what its model allows, on the translated and the native path, per backend of a chain."""

from __future__ import annotations

import openai

from hookproxy_anthropic.testing import error


def claude_code_turn(sdk, model: str, max_tokens: int = 32000, budget: int = 31999) -> str:
    """One streamed turn shaped like Claude Code's (beta endpoint, thinking on); the answer's text."""
    with sdk.beta.messages.stream(model=model, max_tokens=max_tokens, messages=[{"role": "user", "content": "hi"}],
                                  thinking={"type": "enabled", "budget_tokens": budget},
                                  betas=["claude-code-20250219", "interleaved-thinking-2025-05-14"]) as stream:
        return "".join(block.text for block in stream.get_final_message().content if block.type == "text")


def capped(kit, fake_upstream, claude_up, up: int | None = None, claude: int | None = None) -> dict:
    blocks = kit.backends(fake_upstream, claude_up)
    if up is not None:
        blocks["up"]["max_output_tokens"] = up
    if claude is not None:
        blocks["claude"]["max_output_tokens"] = claude
    return blocks


def test_claude_codes_32000_reach_an_openai_backend_as_its_cap(kit, start, fake_upstream, claude_up):
    running = start(backends=capped(kit, fake_upstream, claude_up, up=8192))

    assert claude_code_turn(kit.sdk(running), "gpt-fake") == "echo: hi"

    sent = fake_upstream.requests_to()[-1].json
    assert sent["max_tokens"] == 8192 and sent["reasoning_effort"] == "high"


def test_a_native_anthropic_backend_gets_its_cap_and_a_thinking_budget_below_it(kit, start, fake_upstream,
                                                                              claude_up):
    sdk = kit.sdk(start(backends=capped(kit, fake_upstream, claude_up, claude=8192)))

    claude_code_turn(sdk, "claude:claude-fake")
    sent = claude_up.requests_to()[-1].json
    assert sent["max_tokens"] == 8192 and sent["thinking"] == {"type": "enabled", "budget_tokens": 8191}

    claude_code_turn(sdk, "claude:claude-fake", max_tokens=4096, budget=2048)
    sent = claude_up.requests_to()[-1].json
    assert sent["max_tokens"] == 4096 and sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_a_cap_too_small_for_any_thinking_budget_turns_thinking_off(kit, start, fake_upstream, claude_up):
    sdk = kit.sdk(start(backends=capped(kit, fake_upstream, claude_up, claude=1000)))

    claude_code_turn(sdk, "claude:claude-fake", budget=16000)

    sent = claude_up.requests_to()[-1].json
    assert sent["max_tokens"] == 1000 and "thinking" not in sent


def test_each_backend_of_a_chain_gets_its_own_cap(kit, start, fake_upstream, claude_up):
    running = start(backends=capped(kit, fake_upstream, claude_up, up=4096, claude=16000))
    claude_up.queue(error(529, "overloaded_error", "Overloaded"))

    assert claude_code_turn(kit.sdk(running), "claude:claude-fake|up:gpt-fake") == "echo: hi"

    assert claude_up.requests_to()[-1].json["max_tokens"] == 16000
    assert fake_upstream.requests_to()[-1].json["max_tokens"] == 4096


def test_a_chat_client_sending_no_max_tokens_gets_the_default_within_the_cap(kit, start, fake_upstream, claude_up):
    running = start(backends=capped(kit, fake_upstream, claude_up, claude=4096))
    chat = openai.OpenAI(base_url=running.url + "/v1", api_key=kit.KEY, max_retries=0)

    chat.chat.completions.create(model="claude:claude-fake", messages=kit.USER)

    assert claude_up.requests_to()[-1].json["max_tokens"] == 4096
