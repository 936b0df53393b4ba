"""The proxy's own HTTP/1.1 pool to the engine, against a scripted server on a real socket: framing
(chunked, length, until close, informational and bodiless answers, bytes cut anywhere), reuse and
its limits, timeouts, and the engine's failures as httpx's exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from infer_cli.proxy.upstream.transport import UpstreamTransport

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


@dataclass
class Server:
    """Answers each connection with ``script``; counts connections and records request heads."""

    script: Script
    connections: int = 0
    heads: list[bytes] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length" and int(value):
                await reader.readexactly(int(value))
        return head

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(reader, writer, self)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def serving(script: Script) -> AsyncIterator[Server]:
    server = Server(script)
    listener = await asyncio.start_server(server._handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()


@contextlib.asynccontextmanager
async def client(**options: float) -> AsyncIterator[httpx.AsyncClient]:
    transport = UpstreamTransport(
        max_connections=int(options.pop("max_connections", 8)),
        keepalive_expiry=options.pop("keepalive_expiry", 30.0),
    )
    timeout = httpx.Timeout(options.pop("timeout", 5.0), pool=options.pop("pool", 5.0))
    async with httpx.AsyncClient(transport=transport, timeout=timeout) as http:
        yield http


def url(server: Server, path: str = "/v1/x") -> str:
    return f"http://127.0.0.1:{server.port}{path}"


CHUNKED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    b"9\r\ndata: 1\n\n\r\n"
    b"9;ext=1\r\ndata: 2\n\n\r\n"
    b"0\r\nx-trailer: t\r\n\r\n"
)


def answer(raw: bytes, *, requests: int = 1, drip: int = 0) -> Script:
    """Answer ``requests`` requests on a connection with ``raw`` (``drip`` bytes per write)."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        for _ in range(requests):
            await s.read_request(reader)
            if drip:
                for at in range(0, len(raw), drip):
                    writer.write(raw[at : at + drip])
                    await writer.drain()
                    await asyncio.sleep(0)
            else:
                writer.write(raw)
            await writer.drain()
        await reader.read()  # until the client closes

    return script


@pytest.mark.parametrize("drip", [0, 1, 7])
async def test_a_chunked_answer_cut_anywhere_reads_whole(drip: int) -> None:
    async with serving(answer(CHUNKED, drip=drip)) as server, client() as http:
        async with http.stream("POST", url(server), content=b"{}") as response:
            body = b"".join([chunk async for chunk in response.aiter_raw()])
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert body == b"data: 1\n\ndata: 2\n\n"


async def test_connections_are_reused_and_requests_sent_whole() -> None:
    raw = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
    async with serving(answer(raw, requests=3)) as server, client() as http:
        for _ in range(3):
            response = await http.post(url(server, "/v1/y?a=1"), content=b"abc")
            assert response.content == b"hello"
    assert server.connections == 1
    head = server.heads[0]
    assert head.startswith(b"POST /v1/y?a=1 HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in head
    assert b"\r\nContent-Length: 3\r\n" in head


async def test_a_body_until_the_connection_closes() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\npart one, ")
        await writer.drain()
        writer.write(b"part two")

    async with serving(script) as server, client() as http:
        for _ in range(2):
            response = await http.get(url(server))
            assert response.content == b"part one, part two"
    assert server.connections == 2  # not reused


async def test_informational_answers_are_skipped_and_head_has_no_body() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n"
    head_answer = b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n"

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(raw)
        await s.read_request(reader)
        writer.write(head_answer)
        await reader.read()

    async with serving(script) as server, client() as http:
        first = await http.post(url(server), content=b"x")
        assert (first.status_code, first.headers["x-a"], first.content) == (204, "1", b"")
        second = await http.head(url(server))
        assert (second.status_code, second.content) == (200, b"")
    assert server.connections == 1


async def test_closing_a_response_early_closes_its_connection() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await reader.read()  # the client's EOF: what tells vLLM to abort the request
        s.closed.set()

    async with serving(script) as server, client() as http:
        async with http.stream("POST", url(server), content=b"{}") as response:
            async for chunk in response.aiter_raw():
                assert chunk == b"first"
                break
        await asyncio.wait_for(server.closed.wait(), 2)


async def test_the_engine_going_away_is_a_remote_protocol_error() -> None:
    async def no_answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server
    ) -> None:
        await s.read_request(reader)

    async def half_answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server
    ) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")

    async with serving(no_answer) as server, client() as http:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await http.get(url(server))
    async with serving(half_answer) as server, client() as http:
        response = await http.send(http.build_request("GET", url(server)), stream=True)
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            await response.aread()
        await response.aclose()


@pytest.mark.parametrize(
    "raw",
    [
        b"SPDY/3 200 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    ],
)
async def test_a_garbled_answer_is_a_remote_protocol_error(raw: bytes) -> None:
    async with serving(answer(raw)) as server, client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            response = await http.get(url(server))
            await response.aread()


async def test_silence_is_a_read_timeout_before_and_during_the_body() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        await asyncio.sleep(5)

    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n")
        await asyncio.sleep(5)

    async with serving(silent) as server, client(timeout=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(url(server))
    async with serving(stalls) as server, client(timeout=0.2) as http:
        response = await http.send(http.build_request("GET", url(server)), stream=True)
        chunks = response.aiter_raw()
        assert await anext(chunks) == b"a"
        with pytest.raises(httpx.ReadTimeout):
            await anext(chunks)
        await response.aclose()


async def test_a_short_timeout_on_a_reused_connection_still_applies() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await s.read_request(reader)
        await asyncio.sleep(5)

    async with serving(script) as server, client(timeout=60) as http:
        assert (await http.get(url(server))).content == b"ok"
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.ReadTimeout):
            await http.get(url(server), timeout=0.2)
        assert asyncio.get_running_loop().time() - started < 2


async def test_requests_beyond_the_limit_wait_for_a_connection_or_time_out() -> None:
    gate = asyncio.Event()
    raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        while True:
            await s.read_request(reader)
            await gate.wait()
            writer.write(raw)
            await writer.drain()

    async with serving(script) as server, client(max_connections=1, pool=0.2) as http:
        first = asyncio.ensure_future(http.get(url(server)))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await http.get(url(server))
        second = asyncio.ensure_future(http.get(url(server), timeout=5))
        await asyncio.sleep(0.05)
        gate.set()
        assert (await first).content == (await second).content == b"ok"
    assert server.connections == 1


async def test_a_connection_the_engine_closed_while_idle_is_not_reused() -> None:
    raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(raw)
        await writer.drain()  # then close, as a server whose keep-alive time is over

    async with serving(script) as server, client() as http:
        for _ in range(3):
            assert (await http.get(url(server))).content == b"ok"
            await asyncio.sleep(0.05)
    assert server.connections == 3


async def test_idle_connections_expire() -> None:
    raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    async with serving(answer(raw, requests=2)) as server, client(keepalive_expiry=0.1) as http:
        assert (await http.get(url(server))).content == b"ok"
        await asyncio.sleep(0.2)
        assert (await http.get(url(server))).content == b"ok"
    assert server.connections == 2


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with serving(answer(b"")) as server:
        port = server.port
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/")


async def test_a_streamed_request_body_is_sent_chunked() -> None:
    received: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        received.append(await reader.readuntil(b"0\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await reader.read()

    async def parts() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b""
        yield b"defgh"

    async with serving(script) as server, client() as http:
        response = await http.post(url(server), content=parts())
        assert response.status_code == 200
    assert b"transfer-encoding: chunked" in server.heads[0].lower()
    assert received == [b"3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n"]


async def test_https_is_not_this_transports() -> None:
    transport = UpstreamTransport()
    with pytest.raises(httpx.UnsupportedProtocol):
        await transport.handle_async_request(httpx.Request("GET", "https://127.0.0.1/"))
    await transport.aclose()
