"""The event stream for canonical chunks: grammar, sequence numbers, items, usage and endings."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from hookproxy import ClientRequest, HTTPRequest, RateLimited, UpstreamError
from hookproxy.testing import chunk, content_stream
from hookproxy_responses import ResponsesFrontend, ResponsesSettings

SCOPE = {"type": "http", "method": "POST", "path": "/v1/responses", "headers": []}
TOOLS = [{"type": "function", "name": "read", "parameters": {"type": "object"}},
         {"type": "custom", "name": "apply_patch"},
         {"type": "namespace", "name": "agents", "description": "d",
          "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object"}}]}]


def start(**body: Any) -> tuple[ResponsesFrontend, ClientRequest]:
    frontend = ResponsesFrontend(ResponsesSettings())
    client = frontend.parse(HTTPRequest(SCOPE, {"model": "m", "input": "hi", "stream": True, "tools": TOOLS, **body}))
    assert isinstance(client, ClientRequest)
    return frontend, client


def sse(*payloads: Any, done: bool = True) -> list[bytes]:
    raw = [b"data: " + (p.encode() if isinstance(p, str) else orjson.dumps(p)) + b"\n\n" for p in payloads]
    return [*raw, b"data: [DONE]\n\n"] if done else raw


def events_of(raw: bytes) -> list[dict[str, Any]]:
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        event = json.loads(lines[1][6:])
        assert event["type"] == lines[0][7:]
        events.append(event)
    return events


async def render(pieces: list[bytes], **body: Any) -> list[dict[str, Any]]:
    frontend, client = start(**body)

    async def source() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    out = b"".join([part async for part in frontend.render_stream(source(), client)])
    return events_of(out)


def check_grammar(events: list[dict[str, Any]]) -> None:
    """Sequence numbers count up from 0; every item is added, then its own events, then done."""
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert [event["type"] for event in events[:2]] == ["response.created", "response.in_progress"]
    opened: dict[int, str] = {}
    closed: set[int] = set()
    for event in events[2:-1]:
        index = event.get("output_index")
        if event["type"] == "response.output_item.added":
            assert index == len(opened) and index not in opened
            opened[index] = event["item"]["id"]
        elif event["type"] == "response.output_item.done":
            assert index in opened and index not in closed and event["item"]["id"] == opened[index]
            closed.add(index)
        else:
            assert index in opened and index not in closed and event["item_id"] == opened[index], event
    assert closed == set(opened)


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == kind]


def test_text_streams_as_deltas_and_ends_with_a_complete_item_and_every_usage_field():
    usage = {"id": "c", "object": "chat.completion.chunk", "choices": [],
             "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
                       "prompt_tokens_details": {"cached_tokens": 6},
                       "completion_tokens_details": {"reasoning_tokens": 1}}}
    events = asyncio.run(render(sse(*content_stream(["Hel", "lo"]), usage)))
    check_grammar(events)
    assert [event["type"] for event in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [event["delta"] for event in of_type(events, "response.output_text.delta")] == ["Hel", "lo"]
    item = events[-2]["item"]
    assert item["type"] == "message" and item["content"][0]["text"] == "Hello" and item["status"] == "completed"
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["output"] == [item]
    assert final["usage"] == {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 6}, "output_tokens": 4,
                              "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 14}
    assert events[0]["response"]["id"] == final["id"] and events[0]["response"]["status"] == "in_progress"


def test_usage_fields_are_all_there_even_when_the_backend_sends_none():
    events = asyncio.run(render(sse(*content_stream(["x"]))))
    assert events[-1]["response"]["usage"] == {"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0},
                                               "output_tokens": 0, "output_tokens_details": {"reasoning_tokens": 0},
                                               "total_tokens": 0}


def test_reasoning_content_becomes_a_reasoning_item_with_summary_events_before_the_text():
    events = asyncio.run(render(sse(chunk({"role": "assistant", "reasoning_content": "Think"}),
                                    chunk({"reasoning_content": " hard."}), chunk({"content": "Answer"}),
                                    chunk({}, "stop"))))
    check_grammar(events)
    kinds = [event["type"] for event in events]
    assert kinds[2:9] == ["response.output_item.added", "response.reasoning_summary_part.added",
                          "response.reasoning_summary_text.delta", "response.reasoning_summary_text.delta",
                          "response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
                          "response.output_item.done"]
    assert events[8]["item"] == {"id": events[8]["item"]["id"], "type": "reasoning",
                                 "summary": [{"type": "summary_text", "text": "Think hard."}]}
    assert [item["type"] for item in events[-1]["response"]["output"]] == ["reasoning", "message"]


def test_parallel_calls_are_separate_items_whose_arguments_stream_as_they_arrive():
    events = asyncio.run(render(sse(
        chunk({"role": "assistant", "content": "Reading both."}),
        chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                               "function": {"name": "read", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"pa'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'th": "a"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                               "function": {"name": "agents__spawn", "arguments": '{"n": 1}'}}]}),
        chunk({}, "tool_calls"))))
    check_grammar(events)
    deltas = of_type(events, "response.function_call_arguments.delta")
    assert [(event["output_index"], event["delta"]) for event in deltas] == [
        (1, '{"pa'), (1, 'th": "a"}'), (2, '{"n": 1}')]
    done = {event["output_index"]: event for event in of_type(events, "response.function_call_arguments.done")}
    assert done[1]["arguments"] == '{"path": "a"}' and done[2]["arguments"] == '{"n": 1}'
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["message", "function_call", "function_call"]
    assert output[1]["call_id"] == "call_a" and output[1]["name"] == "read"
    assert output[2]["name"] == "spawn" and output[2]["namespace"] == "agents"  # mapped back
    assert len({item["id"] for item in output}) == 3


def test_a_custom_tool_call_streams_its_raw_input_and_comes_back_as_custom_tool_call():
    arguments = json.dumps({"input": "*** Begin Patch\n+caf\u00e9 \U0001f600 \"q\"\n*** End Patch\n"})
    fragments = [arguments[i:i + 3] for i in range(0, len(arguments), 3)]  # splits escapes anywhere
    events = asyncio.run(render(sse(
        chunk({"tool_calls": [{"index": 0, "id": "call_p", "type": "function",
                               "function": {"name": "apply_patch", "arguments": ""}}]}),
        *[chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}) for piece in fragments],
        chunk({}, "tool_calls"))))
    check_grammar(events)
    assert not of_type(events, "response.function_call_arguments.delta")
    deltas = [event["delta"] for event in of_type(events, "response.custom_tool_call_input.delta")]
    expected = "*** Begin Patch\n+caf\u00e9 \U0001f600 \"q\"\n*** End Patch\n"
    assert len(deltas) > 5 and "".join(deltas) == expected
    assert of_type(events, "response.custom_tool_call_input.done")[0]["input"] == expected
    item = events[-1]["response"]["output"][0]
    assert item == {"id": item["id"], "type": "custom_tool_call", "status": "completed", "call_id": "call_p",
                    "name": "apply_patch", "input": expected}


def test_a_custom_tool_answered_without_the_wrapper_is_still_sent_whole():
    events = asyncio.run(render(sse(
        chunk({"tool_calls": [{"index": 0, "id": "call_p", "type": "function",
                               "function": {"name": "apply_patch", "arguments": "*** Begin Patch"}}]}),
        chunk({}, "tool_calls"))))
    deltas = of_type(events, "response.custom_tool_call_input.delta")
    assert [event["delta"] for event in deltas] == ["*** Begin Patch"]
    assert events[-1]["response"]["output"][0]["input"] == "*** Begin Patch"


@pytest.mark.parametrize(("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")])
def test_a_cut_answer_ends_with_response_incomplete(finish, reason):
    events = asyncio.run(render(sse(chunk({"content": "Partial"}), chunk({}, finish))))
    check_grammar(events)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["status"] == "incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": reason}


def test_a_stream_that_stops_before_finishing_raises_for_the_core_to_end_it():
    frontend, client = start()

    async def run() -> bytes:
        async def source() -> AsyncIterator[bytes]:
            for piece in sse(chunk({"content": "Half"}), done=False):
                yield piece

        out = b""
        with pytest.raises(UpstreamError, match="before the answer was finished"):
            async for part in frontend.render_stream(source(), client):
                out += part
        return out

    events = events_of(asyncio.run(run()))
    assert events[-1]["type"] == "response.output_text.delta"  # the core now sends error_event


def test_an_error_event_inside_the_upstream_stream_raises_with_its_message():
    frontend, client = start()

    async def run() -> None:
        async def source() -> AsyncIterator[bytes]:
            for piece in sse(chunk({"content": "x"}), {"error": {"message": "overloaded", "code": 503}}):
                yield piece

        async for _ in frontend.render_stream(source(), client):
            pass

    with pytest.raises(UpstreamError, match="overloaded") as raised:
        asyncio.run(run())
    assert raised.value.status == 503


def test_error_event_is_response_failed_with_the_codes_clients_act_on():
    frontend, client = start()
    first = events_of(frontend.error_event(RateLimited("slow down", retry_after=7), client))
    assert [event["type"] for event in first] == ["response.created", "response.in_progress", "response.failed"]
    assert [event["sequence_number"] for event in first] == [0, 1, 2]
    failed = first[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "rate_limit_exceeded"
    assert "try again in 7s" in failed["error"]["message"]
    later = events_of(frontend.error_event(UpstreamError("This model's maximum context length is 8192 tokens",
                                                         status=400), client))
    assert [event["type"] for event in later] == ["response.failed"] and later[0]["sequence_number"] == 3
    assert later[0]["response"]["error"]["code"] == "context_length_exceeded"
    server = events_of(frontend.error_event(UpstreamError("boom", status=502), client))
    assert server[0]["response"]["error"] == {"code": "server_error", "message": "boom"}


def test_calls_without_an_index_are_told_apart_by_their_ids():
    events = asyncio.run(render(sse(
        chunk({"tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "read", "arguments": "{}"}}]}),
        chunk({"tool_calls": [{"id": "call_b", "type": "function", "function": {"name": "read", "arguments": '{"'}}]}),
        chunk({"tool_calls": [{"function": {"arguments": 'x": 1}'}}]}),
        chunk({}, "tool_calls"))))
    check_grammar(events)
    output = events[-1]["response"]["output"]
    assert [(item["call_id"], item["arguments"]) for item in output] == [("call_a", "{}"), ("call_b", '{"x": 1}')]


def test_events_before_an_error_in_the_same_read_still_go_out_and_numbers_have_no_gap():
    frontend, client = start()

    async def run() -> bytes:
        async def source() -> AsyncIterator[bytes]:
            yield b"".join(sse(chunk({"content": "Hi"}), {"error": {"message": "quota", "code": 429}}))

        out = b""
        with pytest.raises(UpstreamError, match="quota"):
            async for part in frontend.render_stream(source(), client):
                out += part
        return out

    streamed = events_of(asyncio.run(run()))
    assert streamed[-1]["type"] == "response.output_text.delta" and streamed[-1]["delta"] == "Hi"
    failed = events_of(frontend.error_event(RateLimited("quota"), client))
    assert failed[0]["sequence_number"] == streamed[-1]["sequence_number"] + 1


def test_events_split_anywhere_with_any_line_end_comments_and_multi_line_data():
    from hookproxy_responses.events import DataEvents

    stream = (b": keep-alive\r\n\r\ndata: {\"a\":\r\n\r\ndata: 1}\n\n"
              b"event: x\ndata: {\"b\":\ndata: 2}\r\rdata: [DONE]\r\n\r\ndata: tail")
    for size in (1, 2, 3, 7, len(stream)):
        parser = DataEvents()
        pieces = [stream[start:start + size] for start in range(0, len(stream), size)]
        found = [payload for piece in pieces for payload in parser.feed(piece)]
        found += parser.close()
        assert found == [b'{"a":', b"1}", b'{"b":\n2}', b"[DONE]", b"tail"], size
