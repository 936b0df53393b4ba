"""The proxy's splice (:class:`~infer_cli.proxy.upstream.splice.Splice`) through a real proxy
server: a client that stops reading holds the engine back and still gets every event; the engine's
connection is reused after ``[DONE]`` when its body ends, and closed when junk follows ``[DONE]``
past the drain allowance; a spliced stream records what the relay's loop records. The streaming
contract itself runs both ways in ``test_proxy_streaming``; this module covers what only the
splice does.

The engine here is a scripted raw server (``tests/scripted_server.py``): it writes exactly the
bytes a test gives it, counts its connections and knows when its writes went through.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from infer_cli.proxy.upstream import relay
from infer_cli.proxy.upstream.client import DRAIN_BYTES
from infer_cli.proxy.upstream.splice import Splice
from infer_cli.wire.server import bind
from tests import proxy_harness
from tests.fake_upstream import FakeUpstream
from tests.proxy_harness import MODEL, STREAM, Running, events_of, running_proxy
from tests.scripted_server import Server, serving

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)
USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def chunk(data: bytes) -> bytes:
    """``data`` framed as one HTTP/1.1 chunk."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
    body = {
        "id": "chatcmpl-spliced",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        "choices": choices,
        **extra,
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def content(text: str) -> bytes:
    return event([{"index": 0, "delta": {"content": text}, "finish_reason": None}])


def ending(completion_tokens: int) -> list[bytes]:
    """The finish chunk, the usage chunk and ``[DONE]``, as vLLM ends a stream."""
    usage = {**USAGE, "completion_tokens": completion_tokens, "total_tokens": 5 + completion_tokens}
    return [
        event([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        event([], usage=usage),
        b"data: [DONE]\n\n",
    ]


def dechunk(raw: bytes) -> tuple[bytes, bool]:
    """A chunked body's bytes, and whether its last chunk arrived."""
    body, at = bytearray(), 0
    while True:
        eol = raw.find(b"\r\n", at)
        if eol < 0:
            return bytes(body), False
        size = int(raw[at:eol].split(b";")[0], 16)
        if size == 0:
            return bytes(body), True
        start = eol + 2
        if len(raw) < start + size + 2:
            return bytes(body), False
        body += raw[start : start + size]
        at = start + size + 2


def chunks_of(sse_body: bytes) -> list[dict[str, Any]]:
    """The JSON chunks of an SSE body, after checking ``[DONE]`` came once and last."""
    events = events_of(sse_body)
    assert events[-1] == b"[DONE]"
    assert events.count(b"[DONE]") == 1
    return [json.loads(data) for data in events[:-1]]


@pytest.fixture
def splices(monkeypatch: pytest.MonkeyPatch) -> list[Splice]:
    """The splices the relay makes (so that a test knows it covered one, not the relay's loop)."""
    made: list[Splice] = []

    class Counted(Splice):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(relay, "Splice", Counted)
    return made


def proxy_of(engine: Server, **config: Any) -> AbstractAsyncContextManager[Running]:
    """The proxy in front of the scripted ``engine`` (the fake upstream is not started: unused)."""
    return running_proxy(FakeUpstream(), upstream_url=engine.url(""), **config)


async def stream_through(proxy: Running) -> bytes:
    async with (
        proxy.http() as http,
        http.stream("POST", "/v1/chat/completions", json=STREAM) as response,
    ):
        assert response.status_code == 200
        return b"".join([piece async for piece in response.aiter_bytes()])


# --- a client that does not read ---------------------------------------------------------------

EVENTS = 4000
FILLER = "x" * 4000
"""Some 16 MB in all: several times what the sockets and buffers between the engine and the
client held here once the engine's own send buffer is kept small (about 4.5 MB, measured)."""


def numbered(index: int) -> str:
    return f"<{index}>{FILLER}"


class BigEngine:
    """Streams ``EVENTS`` large content events as fast as its socket takes them, noting how many
    went through and when the whole answer did."""

    def __init__(self) -> None:
        self.sent = 0
        self.finished = asyncio.Event()

    async def script(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server
    ) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        await s.read_request(reader)
        writer.write(SSE_HEAD)
        for index in range(EVENTS):
            writer.write(chunk(content(numbered(index))))
            await writer.drain()
            self.sent = index + 1
        writer.write(b"".join(chunk(piece) for piece in ending(EVENTS)) + b"0\r\n\r\n")
        await writer.drain()
        self.finished.set()
        await reader.read()


async def stalled_client(url: str, *, stall: float, resuming: Callable[[], None]) -> bytes:
    """A streamed completion from a raw socket with a small receive window that reads nothing for
    ``stall`` seconds (then calls ``resuming``), then everything: the response's SSE body."""
    loop = asyncio.get_running_loop()
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps(STREAM).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: %b\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%b" % (host.encode(), len(body), body)
    )
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # a small window
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, int(port)))
        await loop.sock_sendall(sock, request)
        await asyncio.sleep(stall)
        resuming()
        raw = bytearray()
        while piece := await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 10):
            raw += piece
    head, _, rest = bytes(raw).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"transfer-encoding: chunked" in head.lower()
    sse_body, complete = dechunk(rest)
    assert complete
    return sse_body


async def test_a_client_that_stops_reading_holds_the_engine_back_and_loses_nothing(
    splices: list[Splice],
) -> None:
    engine = BigEngine()
    async with serving(engine.script) as server, proxy_of(server) as proxy:
        then: list[tuple[int, bool]] = []
        sse_body = await stalled_client(
            proxy.url,
            stall=1.0,
            resuming=lambda: then.append((engine.sent, engine.finished.is_set())),
        )
        assert engine.finished.is_set()
    assert len(splices) == 1
    # While the client read nothing, the proxy stopped reading the engine: the engine's writes
    # were held back short of the answer's end (without the pause it ends within the stall).
    [(sent_then, finished_then)] = then
    assert not finished_then and sent_then < EVENTS, sent_then
    chunks = chunks_of(sse_body)
    texts = [
        choice["delta"]["content"]
        for item in chunks
        for choice in item["choices"]
        if choice.get("delta", {}).get("content")
    ]
    assert texts == [numbered(index) for index in range(EVENTS)]
    with_usage = [item for item in chunks if item.get("usage")]
    assert with_usage == [chunks[-1]] and chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == EVENTS
    finishes = [
        c["finish_reason"] for item in chunks for c in item["choices"] if c["finish_reason"]
    ]
    assert finishes == ["stop"]


# --- the engine's connection after [DONE] ------------------------------------------------------


def answering(junk: int = 0) -> Any:
    """An engine that answers every request on a connection with a short stream; ``junk`` bytes
    (in 8 KiB chunks, a few milliseconds apart) follow ``[DONE]`` before the body's end."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        while True:
            await s.read_request(reader)
            pieces = [content("Hello"), content(","), content(" world"), *ending(3)]
            writer.write(SSE_HEAD + b"".join(chunk(piece) for piece in pieces))
            await writer.drain()
            left = junk
            while left > 0:
                await asyncio.sleep(0.005)
                writer.write(chunk(b": junk " + b"j" * 8185))
                await writer.drain()
                left -= 8192
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    return script


def assert_complete(sse_body: bytes) -> None:
    chunks = chunks_of(sse_body)
    text = "".join(c["delta"].get("content") or "" for item in chunks for c in item["choices"])
    assert text == "Hello, world"
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    assert b"junk" not in sse_body


async def test_the_engine_connection_is_reused_after_done_when_its_body_ends(
    splices: list[Splice],
) -> None:
    async with serving(answering()) as server, proxy_of(server) as proxy:
        for _ in range(3):
            assert_complete(await stream_through(proxy))
    assert len(splices) == 3
    assert len(server.heads) == 3
    assert server.connections == 1


async def test_junk_after_done_past_the_drain_allowance_closes_the_engine_connection(
    splices: list[Splice],
) -> None:
    async with serving(answering(junk=4 * DRAIN_BYTES)) as server, proxy_of(server) as proxy:
        for _ in range(2):
            assert_complete(await stream_through(proxy))
    assert len(splices) == 2
    assert server.connections == 2  # each connection dropped: not one to carry the next


async def test_junk_after_done_within_the_allowance_is_read_and_the_connection_reused(
    splices: list[Splice],
) -> None:
    async with serving(answering(junk=DRAIN_BYTES // 2)) as server, proxy_of(server) as proxy:
        for _ in range(2):
            assert_complete(await stream_through(proxy))
    assert len(splices) == 2
    assert server.connections == 1


@pytest.fixture
def small_send_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The proxy's client connections (accepted from its socket) keep a small send buffer, so that
    a client that does not read makes the proxy's writer pause at once."""

    def small_send_buffer(host: str, port: int) -> socket.socket:
        sock = bind(host, port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * 1024)
        return sock

    monkeypatch.setattr(proxy_harness, "bind", small_send_buffer)


@pytest.mark.usefixtures("small_send_buffers")
async def test_a_client_behind_at_the_engines_last_read_leaves_its_connection_usable(
    splices: list[Splice],
) -> None:
    """The whole answer comes in one read while the client is not reading: the splice pauses the
    engine's connection at the read that also ends the body. The connection goes back to the pool
    at the end; the next request on it must be answered, not wait unread for its timeout."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        while True:
            await s.read_request(reader)
            pieces = [content("Hello"), content(","), content(" world")]
            pieces += [content(":" + "y" * 4000) for _ in range(40)]  # ~170 KB in all
            pieces += ending(3)
            writer.write(SSE_HEAD + b"".join(chunk(piece) for piece in pieces) + b"0\r\n\r\n")
            await writer.drain()

    async with serving(script) as server, proxy_of(server, request_timeout=1.0) as proxy:
        first = await stalled_client(proxy.url, stall=0.5, resuming=lambda: None)
        assert chunks_of(first)[-1]["usage"]["completion_tokens"] == 3
        async with (
            proxy.http() as http,
            http.stream("POST", "/v1/chat/completions", json=STREAM) as response,
        ):
            assert response.status_code == 200  # not 408 after the engine's connection sat unread
            second = b"".join([piece async for piece in response.aiter_bytes()])
        assert chunks_of(second)[-1]["usage"]["completion_tokens"] == 3
    assert len(splices) == 2


@pytest.mark.parametrize("case", ["no [DONE]", "end after [DONE] comes late"])
@pytest.mark.usefixtures("small_send_buffers")
async def test_a_stalled_client_at_the_end_does_not_cost_the_engine_connection(
    splices: list[Splice], case: str
) -> None:
    """The engine's last events (an end without ``[DONE]``, or ``[DONE]`` with the body's end some
    time later) reach a proxy whose client is not reading: the rest of the engine's body is read
    anyway, and its connection carries the next request."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        while True:
            await s.read_request(reader)
            pieces = [content("Hello")] + [content("y" * 4000) for _ in range(40)]
            last = ending(41)
            if case == "no [DONE]":
                writer.write(SSE_HEAD + b"".join(chunk(p) for p in pieces + last[:2]))
                writer.write(b"0\r\n\r\n")
            else:
                writer.write(SSE_HEAD + b"".join(chunk(p) for p in pieces + last))
                await writer.drain()
                await asyncio.sleep(0.3)  # the body's end, while the client still stalls
                writer.write(b"0\r\n\r\n")
            await writer.drain()

    async with serving(script) as server, proxy_of(server, request_timeout=5.0) as proxy:
        first = await stalled_client(proxy.url, stall=1.5, resuming=lambda: None)
        assert chunks_of(first)[-1]["usage"]["completion_tokens"] == 41
        second = await stream_through(proxy)
        assert chunks_of(second)[-1]["usage"]["completion_tokens"] == 41
    assert len(splices) == 2
    assert server.connections == 1  # the first answer's connection was read to its end, reused


# --- what a generation records -----------------------------------------------------------------


@pytest.fixture
async def paced() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream()
    upstream.first_token_delay, upstream.chunk_delay, upstream.chunks = 0.1, 0.03, 6
    await upstream.start()
    try:
        yield upstream
    finally:
        await upstream.stop()


async def recorded(proxy: Running) -> Any:
    body = await stream_through(proxy)
    chunks_of(body)
    for _ in range(200):
        if proxy.records:
            return proxy.records[-1]
        await asyncio.sleep(0.01)
    raise AssertionError("no generation record")


async def test_a_spliced_stream_records_what_the_relay_loop_records(
    paced: FakeUpstream, splices: list[Splice]
) -> None:
    async with running_proxy(paced) as spliced:
        one = await recorded(spliced)
    assert len(splices) == 1
    async with running_proxy(paced, chunk_writer=False) as looped:
        other = await recorded(looped)
    assert len(splices) == 1  # the loop, this time
    same = ("streamed", "cancelled", "status", "finish_reason", "native_finish_reason", "error")
    assert [getattr(one, name) for name in same] == [getattr(other, name) for name in same]
    assert (one.finish_reason, one.error, one.cancelled) == ("stop", None, False)
    tokens = ("prompt_tokens", "completion_tokens", "cached_tokens", "cost")
    assert [getattr(one, name) for name in tokens] == [getattr(other, name) for name in tokens]
    assert one.completion_tokens == 6
    # The timings are measured, not equal: both see the engine's pacing (loose bounds).
    for record in (one, other):
        assert record.ttft is not None and 0.1 <= record.ttft < 5
        assert len(record.itl) == 5
        assert 0 < sum(record.itl) < 5
        assert record.latency >= record.ttft
