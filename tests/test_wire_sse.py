"""The one SSE codec (infer_cli.wire.sse): framing by the event-stream rules, cut anywhere."""

from __future__ import annotations

import itertools
import json

import pytest

from infer_cli.wire.sse import (
    DONE,
    EventSplitter,
    SSEDecoder,
    SSEEvent,
    comment,
    data_event,
    decode,
    error_event,
    event_data,
)

STREAM = (
    b": OPENROUTER PROCESSING\n\n"
    b'data: {"a": 1}\n\n'
    b"event: note\r\ndata: line one\r\ndata: line two\r\n\r\n"
    b"id: 7\ndata: caf\xc3\xa9\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent('{"a": 1}'),
    SSEEvent("line one\nline two", event="note"),
    SSEEvent("café", id="7"),
    SSEEvent("[DONE]", id="7"),
]

# One stream of three events (a comment, two data lines, a field without a value), written with
# each kind of line end; the events are the same whatever the line ends and however it is cut.
LINES = [b": keep-alive", b"", b'data: {"x": 1}', b"", b"data: one", b"data:two", b"", b"data", b""]
LINE_ENDS = {"LF": b"\n", "CRLF": b"\r\n", "CR": b"\r"}
LINES_EVENTS = [SSEEvent('{"x": 1}'), SSEEvent("one\ntwo"), SSEEvent("")]


def written_with(end: bytes) -> bytes:
    return b"".join(line + end for line in LINES)


def cut_at(stream: bytes, *cuts: int) -> list[bytes]:
    edges = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(edges)]


# --- framing --------------------------------------------------------------------------------------


def test_whole_stream() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(STREAM) + decoder.close() == EXPECTED
    assert decoder.comments == 1 and decoder.last_comment == "OPENROUTER PROCESSING"
    assert EXPECTED[-1].done and not EXPECTED[0].done
    assert EXPECTED[0].json() == {"a": 1}


@pytest.mark.parametrize("end", LINE_ENDS.values(), ids=LINE_ENDS.keys())
def test_every_line_end_gives_the_same_events(end: bytes) -> None:
    decoder = SSEDecoder()
    assert decoder.feed(written_with(end)) == LINES_EVENTS
    assert decoder.close() == []
    assert decoder.comments == 1 and decoder.last_comment == "keep-alive"


@pytest.mark.parametrize("end", LINE_ENDS.values(), ids=LINE_ENDS.keys())
def test_a_cut_at_every_byte_gives_the_same_events(end: bytes) -> None:
    stream = written_with(end)
    for cut in range(len(stream) + 1):
        assert list(decode(cut_at(stream, cut))) == LINES_EVENTS, f"cut at {cut}"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_any_chunk_size_gives_the_same_events(size: int) -> None:
    """Chunks may split lines, CRLF pairs and multi-byte characters anywhere."""
    chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert list(decode(chunks)) == EXPECTED


def test_splitter_keeps_every_byte_of_every_event() -> None:
    """The proxy forwards events it does not change as the splitter's bytes: nothing lost."""
    for cut in range(len(STREAM) + 1):
        splitter = EventSplitter()
        events = [event for chunk in cut_at(STREAM, cut) for event in splitter.feed(chunk)]
        assert b"".join(events) == STREAM, f"cut at {cut}"
        assert len(events) == 5 and splitter.rest() == []


@pytest.mark.parametrize(
    "stream",
    [STREAM, *(written_with(end) for end in LINE_ENDS.values()), b"data: a\n\n\n\ndata\n\n"],
)
def test_feed_data_is_feed_then_event_data(stream: bytes) -> None:
    for cut in range(len(stream) + 1):
        events, datas = EventSplitter(), EventSplitter()
        expected = [
            data
            for chunk in cut_at(stream, cut)
            for event in events.feed(chunk)
            if (data := event_data(event)) is not None
        ]
        found = [data for chunk in cut_at(stream, cut) for data in datas.feed_data(chunk)]
        assert found == expected and expected, f"cut at {cut}"


def test_mixed_line_ends_end_an_event() -> None:
    # a line ended by LF, then a blank line ended by CRLF (and the other way round)
    splitter = EventSplitter()
    assert splitter.feed(b"data: a\n\r\ndata: b\r\n\ndata: c\r\r\n") == [
        b"data: a\n\r\n",
        b"data: b\r\n\n",
        b"data: c\r\r\n",
    ]


def test_cr_at_a_reads_end_then_lf_is_one_line_end() -> None:
    assert list(decode([b"data: a\r", b"\r", b"data: b\r\r"])) == [SSEEvent("a"), SSEEvent("b")]
    assert list(decode([b"data: a\r", b"\n\r\n"])) == [SSEEvent("a")]
    splitter = EventSplitter()
    assert splitter.feed(b"data: a\r\r") == [b"data: a\r\r"]
    # that "\n" ends the blank line already seen: it opens the next event's bytes, not its data
    (event,) = splitter.feed(b"\ndata: b\n\n")
    assert event == b"\ndata: b\n\n" and event_data(event) == b"b"


def test_fields_comments_and_a_byte_order_mark() -> None:
    # no space after the colon, a field without a colon, unknown fields, retry, an empty data line
    stream = b"\xef\xbb\xbfdata:x\nfoo: bar\nretry: 500\n\ndata\n\n: only a comment\n\n"
    assert list(decode([stream])) == [SSEEvent("x", retry=500), SSEEvent("")]
    assert list(decode([stream[:2], stream[2:]])) == [SSEEvent("x", retry=500), SSEEvent("")]


def test_events_without_data_are_not_dispatched_and_the_last_id_carries_over() -> None:
    stream = b"event: ping\n\nid: 1\ndata: a\n\nretry: soon\ndata: b\n\nid: x\0y\ndata: c\n\n"
    assert list(decode([stream])) == [
        SSEEvent("a", id="1"),
        SSEEvent("b", id="1"),
        SSEEvent("c", id="1"),
    ]


def test_a_stream_cut_mid_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"x": 1}') == []
    assert decoder.close() == [SSEEvent('{"x": 1}')]  # a last event without its blank line
    cut = SSEDecoder()
    assert cut.feed(b'data: {"x": 1}\n\ndata: {"y"') == [SSEEvent('{"x": 1}')]
    (partial,) = cut.close()
    assert partial.data == '{"y"'
    with pytest.raises(ValueError):
        partial.json()  # the reader's JSON parse is what catches a cut line
    splitter = EventSplitter()
    assert splitter.feed(b"data: a\n") == []
    assert splitter.rest() == [b"data: a\n"]
    assert splitter.rest() == []
    assert EventSplitter().rest() == []


def test_done() -> None:
    splitter = EventSplitter()
    (event,) = splitter.feed(DONE)
    assert event_data(event) == b"[DONE]"
    assert [event.done for event in decode([DONE])] == [True]


# --- event_data -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "data"),
    [
        (b'data: {"a":1}\n\n', b'{"a":1}'),  # the usual case
        (b"data:x\n\n", b"x"),
        (b"data:  two spaces\n\n", b" two spaces"),
        (b"data: a\ndata: b\n\n", b"a\nb"),
        (b"data: a\r\ndata: b\r\n\r\n", b"a\nb"),
        (b"data: a\rb\n\n", b"a"),  # "\r" ends a line: "b" is a field of its own
        (b"event: x\ndata: y\n\n", b"y"),
        (b"data\n\n", b""),
        (b": comment\n\n", None),
        (b"event: ping\n\n", None),
        (b"datum: no\n\n", None),
        (b"data: tail", b"tail"),  # a last event without its blank line
    ],
)
def test_event_data(event: bytes, data: bytes | None) -> None:
    assert event_data(event) == data


def test_splitter_and_event_data_over_cut_reads() -> None:
    splitter = EventSplitter()
    events = [
        *splitter.feed(b'data: {"a"'),
        *splitter.feed(b":1}\n\ndata: x\r\n\r\n: c"),
        *splitter.feed(b"\n\ndata: [DONE]\n\n"),
        *splitter.feed(b"data: tail"),
        *splitter.rest(),
    ]
    assert [event_data(event) for event in events] == [b'{"a":1}', b"x", None, b"[DONE]", b"tail"]
    assert splitter.feed(b"data: 1\n\n") == [b"data: 1\n\n"]


# --- encoding -------------------------------------------------------------------------------------


def test_encoding() -> None:
    assert comment("a\nb") == b": a\n: b\n\n"
    assert comment("") == b": \n\n"
    assert data_event("[DONE]") == DONE
    assert data_event({"a": 1}) == b'data: {"a":1}\n\n'
    assert data_event("one\ntwo\r\nthree") == b"data: one\ndata: two\ndata: three\n\n"
    assert list(decode([data_event("a\rb")])) == [SSEEvent("a\nb")]
    events = list(decode([data_event({"a": "é\n"}), comment("x"), data_event("[DONE]")]))
    assert [event.json() for event in events[:-1]] == [{"a": "é\n"}] and events[-1].done


def test_error_event() -> None:
    alone = json.loads(event_data(error_event(502, "engine died")) or b"")
    assert alone == {
        "error": {
            "message": "engine died",
            "type": "server_error",
            "code": 502,
            "metadata": {"error_type": "provider_unavailable"},
        }
    }
    inside = json.loads(
        event_data(error_event(429, "slow down", error_type="x", chunk={"id": "c1"})) or b""
    )
    assert inside["id"] == "c1"
    assert inside["error"]["code"] == 429 and inside["error"]["metadata"]["error_type"] == "x"
