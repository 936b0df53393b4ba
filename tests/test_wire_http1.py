"""wire's HTTP/1.1 client (connection, parser, pool), the one both hot paths use, against a
scripted server on a real socket: every framing (chunked with extensions, trailers and size lines
cut anywhere; Content-Length; until close; bodiless answers), reuse and a pooled connection the
server closed, a server that goes away mid-answer, garbage, timeouts and the pool's limits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from infer_cli.wire.http1 import (
    BadResponse,
    Connection,
    Disconnected,
    Framing,
    Origin,
    Pool,
    ResponseHead,
    request_head,
)
from tests.scripted_server import OK, Script, Server, answer, serving


def origin(server: Server) -> Origin:
    return (b"http", b"127.0.0.1", server.port)


def post(path: bytes = b"/v1/x", body: bytes = b"{}") -> bytes:
    headers = [(b"Host", b"127.0.0.1"), (b"Content-Length", str(len(body)).encode())]
    return request_head("POST", path, headers) + body


async def exchange(
    pool: Pool,
    server: Server,
    data: bytes | None = None,
    *,
    head_request: bool = False,
    timeout: float | None = 5.0,
) -> tuple[ResponseHead, bytes]:
    """One request through ``pool``: the response head and the whole body."""
    connection = await pool.acquire(origin(server), connect_timeout=5, pool_timeout=timeout)
    try:
        await connection.send(data or post(), head_request=head_request)
        head = await connection.response_head(timeout)
        body = b""
        while piece := await connection.read(timeout):
            body += piece
        return head, body
    finally:
        pool.release(connection)


@pytest.fixture
async def pool() -> AsyncIterator[Pool]:
    pool = Pool(max_connections=8, max_idle=8)
    yield pool
    pool.close()


# --- framing ------------------------------------------------------------------------------------

CHUNKED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    b"9\r\ndata: 1\n\n\r\n"
    b"9;ext=1\r\ndata: 2\n\n\r\n"
    b"10\r\ndata: 34567890\n\n\r\n"
    b"0\r\nx-trailer: t\r\nx-other: u\r\n\r\n"
)


@pytest.mark.parametrize("drip", [0, 1, 2, 7])
async def test_a_chunked_answer_cut_anywhere_reads_whole(pool: Pool, drip: int) -> None:
    """Cut every byte (``drip=1``): size lines, chunk ends and trailers split across reads."""
    async with serving(answer(CHUNKED, requests=2, drip=drip)) as server:
        for _ in range(2):  # and the trailers were read to their end: the connection is reused
            head, body = await exchange(pool, server)
            assert (head.status, head.framing) == (200, Framing.CHUNKED)
            assert (b"content-type", b"text/event-stream") in head.headers
            assert body == b"data: 1\n\ndata: 2\n\ndata: 34567890\n\n"
    assert server.connections == 1


async def test_a_chunk_size_line_split_between_two_reads(pool: Pool) -> None:
    pieces = [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1",
        b"0;x=",
        b"y\r",
        b"\nhello world, hi!\r",
        b"\n0\r",
        b"\n\r\n",
    ]

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)
        await reader.read()

    async with serving(script) as server:
        _, body = await exchange(pool, server)
    assert body == b"hello world, hi!"


async def test_chunks_that_arrive_together_come_out_as_one_piece(pool: Pool) -> None:
    raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n1\r\nb\r\n1\r\nc\r\n"

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(raw)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        await reader.read()

    async with serving(script) as server:
        connection = await pool.acquire(origin(server), connect_timeout=5, pool_timeout=5)
        await connection.send(post())
        await connection.response_head(5)
        await asyncio.sleep(0.02)  # all three chunks are in before the first read
        assert await connection.read(5) == b"abc"
        assert await connection.read(5) == b""
        pool.release(connection)


async def test_a_content_length_body_and_reuse(pool: Pool) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world"
    async with serving(answer(raw, requests=3, drip=4)) as server:
        for _ in range(3):
            head, body = await exchange(pool, server, post(b"/v1/y?a=1", b"abc"))
            assert (head.framing, head.length, body) == (Framing.LENGTH, 11, b"hello world")
    assert server.connections == 1
    assert server.heads[0].startswith(b"POST /v1/y?a=1 HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 3\r\n" in server.heads[0]


async def test_a_body_until_the_connection_closes(pool: Pool) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\npart one, ")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"part two")

    async with serving(script) as server:
        for _ in range(2):
            head, body = await exchange(pool, server)
            assert (head.framing, head.keep_alive) == (Framing.UNTIL_CLOSE, False)
            assert body == b"part one, part two"
    assert server.connections == 2  # not reused


async def test_connection_close_is_not_reused_and_http10_is_not_kept(pool: Pool) -> None:
    for raw in (
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
    ):
        async with serving(answer(raw, requests=2)) as server:
            for _ in range(2):
                assert (await exchange(pool, server))[1] == b"ok"
        assert server.connections == 2


async def test_informational_answers_are_skipped_and_bodiless_answers_end_at_once(
    pool: Pool,
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n")
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n")  # to a HEAD: no body
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n")
        await reader.read()

    async with serving(script) as server:
        head, body = await exchange(pool, server)
        assert (head.status, head.headers, body) == (204, [(b"x-a", b"1")], b"")
        head, body = await exchange(pool, server, head_request=True)
        assert (head.status, body) == (200, b"")
        head, body = await exchange(pool, server)
        assert (head.status, body) == (304, b"")
    assert server.connections == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"SPDY/3 200 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded: header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabXY",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"1" * 2000,
    ],
)
async def test_a_garbled_answer_is_a_bad_response(pool: Pool, raw: bytes) -> None:
    async with serving(answer(raw)) as server:
        with pytest.raises(BadResponse):
            await exchange(pool, server)


# --- a server that goes away --------------------------------------------------------------------


async def test_a_server_that_closes_mid_body_is_a_clear_disconnect(pool: Pool) -> None:
    async def chunked(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server
    ) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")

    async def length(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")

    for script in (chunked, length):
        async with serving(script) as server:
            connection = await pool.acquire(origin(server), connect_timeout=5, pool_timeout=5)
            await connection.send(post())
            assert (await connection.response_head(5)).status == 200
            assert await connection.read(5) == b"abc"
            with pytest.raises(Disconnected, match="without sending complete message body"):
                await connection.read(5)
            assert not connection.reusable()
            pool.release(connection)
    assert pool.idle == 0


async def test_a_server_that_closes_before_answering(pool: Pool) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)

    async with serving(script) as server:
        with pytest.raises(Disconnected, match="without sending a response"):
            await exchange(pool, server)


async def test_a_pooled_connection_the_server_closed_while_idle_is_not_reused(pool: Pool) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(OK)
        await writer.drain()  # then close, as a server whose keep-alive time is over

    async with serving(script) as server:
        for _ in range(3):
            assert (await exchange(pool, server))[1] == b"ok"
            await asyncio.sleep(0.05)
    assert server.connections == 3


async def test_an_idle_connection_with_an_unread_eof_is_not_lent(pool: Pool) -> None:
    """The server's FIN can be on the socket before the event loop read it: the pool looks."""
    close_now = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(OK)
        await writer.drain()
        await close_now.wait()

    async with serving(script) as server:
        connection = await pool.acquire(origin(server), connect_timeout=5, pool_timeout=5)
        await connection.send(post())
        await connection.response_head(5)
        assert await connection.read(5) == b"ok"
        assert await connection.read(5) == b""
        pool.release(connection)
        assert pool.idle == 1 and connection.alive()
        connection._transport.pause_reading()  # type: ignore[union-attr]  # the loop reads nothing
        close_now.set()
        await asyncio.sleep(0.1)  # the server closed its end; the FIN waits unread
        assert not connection.closed
        taken = await pool.acquire(origin(server), connect_timeout=5, pool_timeout=5)
        assert taken is not connection and connection.closed
        pool.release(taken)
    assert server.connections == 2


async def test_closing_a_response_early_closes_its_connection(pool: Pool) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await reader.read()  # the client's EOF: what tells vLLM to abort the request
        s.closed.set()

    async with serving(script) as server:
        connection = await pool.acquire(origin(server), connect_timeout=5, pool_timeout=5)
        await connection.send(post())
        await connection.response_head(5)
        assert await connection.read(5) == b"first"
        pool.release(connection)  # the body is not over
        await asyncio.wait_for(server.closed.wait(), 2)
    assert pool.idle == 0


async def test_a_refused_connection_is_a_connect_error(pool: Pool) -> None:
    async with serving(answer(b"")) as server:
        port = server.port
    with pytest.raises(httpx.ConnectError):
        await pool.acquire((b"http", b"127.0.0.1", port), connect_timeout=5, pool_timeout=5)
    assert pool.active == 0


# --- timeouts and limits ------------------------------------------------------------------------


async def test_silence_is_a_read_timeout_before_and_during_the_body(pool: Pool) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        await asyncio.sleep(5)

    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n")
        await asyncio.sleep(5)

    async with serving(silent) as server:
        with pytest.raises(httpx.ReadTimeout):
            await exchange(pool, server, timeout=0.2)
    async with serving(stalls) as server:
        connection = await pool.acquire(origin(server), connect_timeout=5, pool_timeout=5)
        await connection.send(post())
        await connection.response_head(0.2)
        assert await connection.read(0.2) == b"a"
        with pytest.raises(httpx.ReadTimeout):
            await connection.read(0.2)
        pool.release(connection)


async def test_a_short_timeout_after_a_long_one_still_applies(pool: Pool) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(OK)
        await s.read_request(reader)
        await asyncio.sleep(5)

    async with serving(script) as server:
        assert (await exchange(pool, server, timeout=60))[1] == b"ok"
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.ReadTimeout):
            await exchange(pool, server, timeout=0.2)
        assert asyncio.get_running_loop().time() - started < 2


async def test_exchanges_beyond_the_limit_wait_for_a_slot_or_time_out() -> None:
    gate = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        while True:
            await s.read_request(reader)
            await gate.wait()
            writer.write(OK)
            await writer.drain()

    pool = Pool(max_connections=1)
    async with serving(script) as server:
        first = asyncio.ensure_future(exchange(pool, server))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await exchange(pool, server, timeout=0.2)
        second = asyncio.ensure_future(exchange(pool, server))
        await asyncio.sleep(0.05)
        gate.set()
        assert (await first)[1] == (await second)[1] == b"ok"
    assert server.connections == 1
    assert (pool.active, pool.idle) == (0, 1)
    pool.close()


async def test_idle_connections_expire_and_the_idle_count_is_bounded() -> None:
    async with serving(answer(OK, requests=2)) as server:
        pool = Pool(keepalive_expiry=0.1)
        await exchange(pool, server)
        await asyncio.sleep(0.2)
        await exchange(pool, server)
        pool.close()
    assert server.connections == 2
    async with serving(answer(OK, requests=2)) as server:
        pool = Pool(max_idle=1)
        await asyncio.gather(exchange(pool, server), exchange(pool, server))
        assert pool.idle == 1
        pool.close()


async def test_a_large_body_is_read_whole_through_read_ahead_pauses(pool: Pool) -> None:
    size = 3 * 1024 * 1024
    raw = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size + b"x" * size
    async with serving(answer(raw)) as server:
        connection = await pool.acquire(origin(server), connect_timeout=5, pool_timeout=5)
        await connection.send(post())
        await connection.response_head(5)
        await asyncio.sleep(0.1)  # the server writes far more than the read-ahead meanwhile
        total = 0
        while piece := await connection.read(5):
            total += len(piece)
        assert total == size
        pool.release(connection)


def test_a_header_with_a_line_break_is_refused() -> None:
    with pytest.raises(httpx.LocalProtocolError):
        request_head("GET", b"/", [(b"x-a", b"1\r\nx-b: 2")])


# --- delivery mode: the body handed to a sink from the connection's callbacks --------------------


class Recorder:
    """A :class:`~infer_cli.wire.http1.BodySink` that writes down every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes | Exception | None]] = []
        self.over = asyncio.Event()
        self.arrived = asyncio.Event()

    def body(self, data: bytes) -> None:
        self.calls.append(("body", data))
        self.arrived.set()

    def ended(self, error: Exception | None) -> None:
        self.calls.append(("ended", error))
        self.over.set()

    @property
    def pieces(self) -> list[bytes]:
        return [data for kind, data in self.calls if kind == "body" and isinstance(data, bytes)]

    @property
    def ends(self) -> list[Exception | None]:
        return [
            error for kind, error in self.calls if kind == "ended" and not isinstance(error, bytes)
        ]

    async def finished(self, timeout: float = 5) -> Exception | None:
        """The error the sink was told at the end (None: a complete body); waits for it, then a
        little longer, so that a call after the end would be seen."""
        await asyncio.wait_for(self.over.wait(), timeout)
        await asyncio.sleep(0.05)
        assert self.calls[-1][0] == "ended", self.calls
        assert len(self.ends) == 1, self.calls
        return self.ends[0]


async def delivering(
    pool: Pool, server: Server, timeout: float | None
) -> tuple[Connection, Recorder]:
    """A request on a pooled connection whose answer's head came: its body delivered to a new
    :class:`Recorder` (read timeout ``timeout``)."""
    connection = await pool.acquire(origin(server), connect_timeout=5, pool_timeout=5)
    await connection.send(post())
    await connection.response_head(5)
    sink = Recorder()
    connection.deliver_to(sink, timeout)
    return connection, sink


async def delivered(
    pool: Pool, server: Server, *, timeout: float | None = 5.0
) -> tuple[Recorder, Connection]:
    """One request through ``pool`` whose body goes to a :class:`Recorder` (waited for to its end);
    the connection is released."""
    connection, sink = await delivering(pool, server, timeout)
    try:
        await sink.finished()
        return sink, connection
    finally:
        pool.release(connection)


LENGTH_BODY = b"0123456789" * 30
LENGTH = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%b" % (len(LENGTH_BODY), LENGTH_BODY)


@pytest.mark.parametrize(
    ("raw", "drip", "expected"),
    [
        (CHUNKED, 1, b"data: 1\n\ndata: 2\n\ndata: 34567890\n\n"),
        (CHUNKED, 0, b"data: 1\n\ndata: 2\n\ndata: 34567890\n\n"),
        (LENGTH, 7, LENGTH_BODY),
    ],
    ids=["chunked-every-byte", "chunked-at-once", "content-length"],
)
async def test_delivery_hands_the_body_in_order_then_the_end_once_and_the_connection_is_reused(
    pool: Pool, raw: bytes, drip: int, expected: bytes
) -> None:
    async with serving(answer(raw, requests=2, drip=drip)) as server:
        for count in (1, 2):
            sink, connection = await delivered(pool, server)
            assert await sink.finished() is None
            assert all(sink.pieces) and b"".join(sink.pieces) == expected
            assert len(sink.pieces) > 1 if drip else len(sink.pieces) >= 1
            assert connection.requests == count  # the second exchange reused the first's
        assert pool.idle == 1
    assert server.connections == 1


async def test_delivery_of_a_body_until_the_connection_closes(pool: Pool) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        for piece in (b"HTTP/1.1 200 OK\r\n\r\npart one, ", b"part ", b"two"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)

    async with serving(script) as server:
        sink, connection = await delivered(pool, server)
        assert await sink.finished() is None
        assert b"".join(sink.pieces) == b"part one, part two"
        assert connection.closed and pool.idle == 0


async def test_a_body_that_arrived_before_delivery_is_delivered_inside_the_call(
    pool: Pool,
) -> None:
    async with serving(answer(CHUNKED)) as server:
        connection = await pool.acquire(origin(server), connect_timeout=5, pool_timeout=5)
        await connection.send(post())
        await connection.response_head(5)
        await asyncio.sleep(0.1)  # the whole answer is in, unread
        sink = Recorder()
        connection.deliver_to(sink, 5)
        assert sink.calls == [
            ("body", b"data: 1\n\ndata: 2\n\ndata: 34567890\n\n"),
            ("ended", None),
        ]
        assert connection.reusable()
        pool.release(connection)
        assert pool.idle == 1


async def test_a_server_that_closes_mid_body_ends_delivery_with_a_disconnect(pool: Pool) -> None:
    async def chunked(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server
    ) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"3\r\nabc\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)

    async def length(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"abc")
        await writer.drain()
        await asyncio.sleep(0.05)

    for script in (chunked, length):
        async with serving(script) as server:
            sink, connection = await delivered(pool, server)
            error = await sink.finished()
            assert isinstance(error, Disconnected)
            assert "without sending complete message body" in str(error)
            assert sink.pieces == [b"abc"]
            assert not connection.reusable()
    assert pool.idle == 0


async def test_silence_in_delivery_mode_is_a_read_timeout_but_steady_pieces_are_not(
    pool: Pool,
) -> None:
    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n")
        await asyncio.sleep(5)

    async def steady(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(8):  # 0.8 s in all, far past the timeout, but never silent that long
            await asyncio.sleep(0.1)
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await reader.read()

    async with serving(stalls) as server:
        started = asyncio.get_running_loop().time()
        sink, connection = await delivered(pool, server, timeout=0.3)
        assert isinstance(await sink.finished(), httpx.ReadTimeout)
        assert asyncio.get_running_loop().time() - started >= 0.25
        assert sink.pieces == [b"a"]
        assert connection.closed  # released unfinished: closed
    async with serving(steady) as server:
        sink, _ = await delivered(pool, server, timeout=0.5)
        assert await sink.finished() is None
        assert b"".join(sink.pieces) == b"x" * 8


def gated(go: asyncio.Event) -> Script:
    """A chunked answer: ``first``, then, once ``go`` is set, ``second`` and the end."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await go.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()

    return script


async def test_paused_reading_delivers_nothing_until_resumed_and_is_no_timeout(pool: Pool) -> None:
    go = asyncio.Event()
    async with serving(gated(go)) as server:
        connection, sink = await delivering(pool, server, 0.2)
        await asyncio.wait_for(sink.arrived.wait(), 5)
        connection.pause_reading()
        go.set()
        await asyncio.sleep(0.5)  # the rest is on the socket; and longer than the read timeout
        assert sink.calls == [("body", b"first")]
        connection.resume_reading()
        assert await sink.finished() is None  # the pause was the reader's: no ReadTimeout
        assert sink.pieces == [b"first", b"second"]
        pool.release(connection)
        assert pool.idle == 1


class Pausing(Recorder):
    """A sink whose consumer is always full: it pauses the connection at every piece, as the
    proxy's splice does when the client reads slower than the engine writes."""

    def __init__(self, connection: Connection) -> None:
        super().__init__()
        self.connection = connection

    def body(self, data: bytes) -> None:
        super().body(data)
        self.connection.pause_reading()


async def test_a_sink_may_pause_reading_from_its_body_callback(pool: Pool) -> None:
    go = asyncio.Event()
    async with serving(gated(go)) as server:
        connection = await pool.acquire(origin(server), connect_timeout=5, pool_timeout=5)
        await connection.send(post())
        await connection.response_head(5)
        sink = Pausing(connection)
        connection.deliver_to(sink, 5)
        await asyncio.wait_for(sink.arrived.wait(), 5)
        go.set()
        await asyncio.sleep(0.2)
        assert sink.calls == [("body", b"first")]
        connection.resume_reading()
        assert await sink.finished() is None
        assert sink.pieces == [b"first", b"second"]
        pool.release(connection)


async def test_a_pause_on_the_last_piece_leaves_the_connection_fit_for_the_next_exchange(
    pool: Pool,
) -> None:
    """The sink pauses at the piece that completes the body: it is told the end at once, and the
    connection it gives back must read the next answer ("back in reading mode"), not sit with
    its socket unread until the next exchange times out."""
    async with serving(answer(CHUNKED, requests=2)) as server:
        connection = await pool.acquire(origin(server), connect_timeout=5, pool_timeout=5)
        await connection.send(post())
        await connection.response_head(5)
        await asyncio.sleep(0.1)  # the whole answer is in: one piece, then the end
        sink = Pausing(connection)
        connection.deliver_to(sink, 5)
        assert sink.calls == [
            ("body", b"data: 1\n\ndata: 2\n\ndata: 34567890\n\n"),
            ("ended", None),
        ]
        pool.release(connection)
        _, body = await exchange(pool, server, timeout=1.0)
        assert body == b"data: 1\n\ndata: 2\n\ndata: 34567890\n\n"


async def test_after_stop_delivery_the_sink_hears_nothing_and_the_connection_is_closed(
    pool: Pool,
) -> None:
    go = asyncio.Event()
    async with serving(gated(go)) as server:
        connection, sink = await delivering(pool, server, 0.2)
        await asyncio.wait_for(sink.arrived.wait(), 5)
        connection.stop_delivery()
        go.set()
        await asyncio.sleep(0.4)  # the rest and the end came; the read timeout passed too
        assert sink.calls == [("body", b"first")]
        pool.release(connection)
        assert connection.closed and pool.idle == 0


async def test_deliver_to_before_the_head_is_refused(pool: Pool) -> None:
    async def holds(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        await reader.read()

    async with serving(holds) as server:
        connection = await pool.acquire(origin(server), connect_timeout=5, pool_timeout=5)
        with pytest.raises(RuntimeError, match="before the response's head"):
            connection.deliver_to(Recorder(), 5)  # no request yet
        await connection.send(post())
        with pytest.raises(RuntimeError, match="before the response's head"):
            connection.deliver_to(Recorder(), 5)  # the server holds the head back
        await asyncio.sleep(0.1)
        with pytest.raises(RuntimeError, match="before the response's head"):
            connection.deliver_to(Recorder(), 5)
        connection.close()
        pool.release(connection)
