"""The SSE parser that plugin transforms rely on: whole events, intact UTF-8, any split."""

from __future__ import annotations

import json

from hookproxy.sse import SSEParser, encode_event

STREAM = ("data: " + json.dumps({"t": "你好"}, ensure_ascii=False) + "\n\n: keepalive\n\n"
          "event: note\r\ndata: line1\r\ndata: line2\r\n\r\ndata: [DONE]\n\n").encode()


def parse(pieces):
    parser = SSEParser()
    events = [event for piece in pieces for event in parser.feed(piece)]
    return events + parser.close()


def test_every_split_point_gives_the_same_events():
    whole = parse([STREAM])
    assert [e.data for e in whole] == ['{"t": "你好"}', None, "line1\nline2", "[DONE]"]
    assert whole[1].comments == ["keepalive"] and whole[2].event == "note" and whole[3].is_done
    for cut in range(1, len(STREAM)):
        assert parse([STREAM[:cut], STREAM[cut:]]) == whole, cut
    assert parse([bytes([b]) for b in STREAM]) == whole


def test_a_final_event_without_its_blank_line_still_counts():
    assert [e.data for e in parse([b"data: a\n\ndata: b"])] == ["a", "b"]


def test_encode_event_round_trips():
    assert parse([encode_event({"x": "多行\n"})])[0].json() == {"x": "多行\n"}
