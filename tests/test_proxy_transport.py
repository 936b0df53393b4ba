"""The proxy's httpx transport over wire's HTTP/1.1 pool, against a scripted server on a socket:
what httpx's side sees (requests sent whole or streamed chunked, httpx's timeouts and limits, its
exceptions, a closed response closing its connection). The framing itself is tested once, in
``test_wire_http1``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from infer_cli.proxy.upstream.transport import UpstreamTransport
from tests.scripted_server import OK, Server, answer, serving


@contextlib.asynccontextmanager
async def client(**options: float) -> AsyncIterator[httpx.AsyncClient]:
    transport = UpstreamTransport(
        max_connections=int(options.pop("max_connections", 8)),
        keepalive_expiry=options.pop("keepalive_expiry", 30.0),
    )
    timeout = httpx.Timeout(options.pop("timeout", 5.0), pool=options.pop("pool", 5.0))
    async with httpx.AsyncClient(transport=transport, timeout=timeout) as http:
        yield http


async def test_a_streamed_answer_through_httpx() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        b"9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n0\r\n\r\n"
    )
    async with serving(answer(raw, drip=5)) as server, client() as http:
        async with http.stream("POST", server.url(), content=b"{}") as response:
            body = b"".join([chunk async for chunk in response.aiter_raw()])
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.extensions["http_version"] == b"HTTP/1.1"
        assert body == b"data: 1\n\ndata: 2\n\n"


async def test_connections_are_reused_and_requests_sent_whole() -> None:
    raw = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
    async with serving(answer(raw, requests=3)) as server, client() as http:
        for _ in range(3):
            response = await http.post(server.url("/v1/y?a=1"), content=b"abc")
            assert response.content == b"hello"
    assert server.connections == 1
    first = server.heads[0]
    assert first.startswith(b"POST /v1/y?a=1 HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in first
    assert b"\r\nContent-Length: 3\r\n" in first


async def test_closing_a_response_early_closes_its_connection() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await reader.read()  # the client's EOF: what tells vLLM to abort the request
        s.closed.set()

    async with serving(script) as server, client() as http:
        async with http.stream("POST", server.url(), content=b"{}") as response:
            async for chunk in response.aiter_raw():
                assert chunk == b"first"
                break
        await asyncio.wait_for(server.closed.wait(), 2)


async def test_the_engine_going_away_is_httpx_remote_protocol_error() -> None:
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
            await http.get(server.url())
    async with serving(half_answer) as server, client() as http:
        response = await http.send(http.build_request("GET", server.url()), stream=True)
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            await response.aread()
        await response.aclose()
    garbled = answer(b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n")
    async with serving(garbled) as server, client() as http:
        with pytest.raises(httpx.RemoteProtocolError, match="malformed header"):
            await http.get(server.url())


async def test_httpx_read_timeouts_apply_before_and_during_the_body() -> None:
    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(OK)
        await s.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n")
        await asyncio.sleep(5)

    async with serving(stalls) as server, client(timeout=60) as http:
        assert (await http.get(server.url())).content == b"ok"
        response = await http.send(
            http.build_request("GET", server.url(), timeout=0.2), stream=True
        )
        chunks = response.aiter_raw()
        assert await anext(chunks) == b"a"
        with pytest.raises(httpx.ReadTimeout):
            await anext(chunks)
        await response.aclose()


async def test_requests_beyond_the_limit_wait_or_time_out_as_httpx_pool_timeout() -> None:
    gate = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        while True:
            await s.read_request(reader)
            await gate.wait()
            writer.write(OK)
            await writer.drain()

    async with serving(script) as server, client(max_connections=1, pool=0.2) as http:
        first = asyncio.ensure_future(http.get(server.url()))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await http.get(server.url())
        second = asyncio.ensure_future(http.get(server.url(), timeout=5))
        await asyncio.sleep(0.05)
        gate.set()
        assert (await first).content == (await second).content == b"ok"
    assert server.connections == 1


async def test_a_refused_connection_is_httpx_connect_error() -> None:
    async with serving(answer(b"")) as server:
        url = server.url()
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(url)


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
        response = await http.post(server.url(), content=parts())
        assert response.status_code == 200
    assert b"transfer-encoding: chunked" in server.heads[0].lower()
    assert received == [b"3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n"]


async def test_https_is_not_this_transports() -> None:
    transport = UpstreamTransport()
    with pytest.raises(httpx.UnsupportedProtocol):
        await transport.handle_async_request(httpx.Request("GET", "https://127.0.0.1/"))
    await transport.aclose()
