"""A completion request written to the engine in the handler's own turn of the event loop
(``UpstreamTransport.send_now``, ``start_response``): on an idle pooled connection only, with the
response awaited as before, and the connection given back however the exchange ends, even when the
task that was to await the answer is cancelled before it ever ran.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest

from infer_cli.proxy.errors import ProxyError
from infer_cli.proxy.upstream.client import UpstreamClient, UpstreamRequest, start_response
from infer_cli.proxy.upstream.transport import SEND_NOW_BYTES, UpstreamTransport
from tests.scripted_server import Server, answer, serving

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    engine = UpstreamTransport(max_connections=4, max_idle=4)
    client = UpstreamClient(engine=engine, timeout=httpx.Timeout(5.0))
    yield client
    await client.aclose()


def upstream(server: Server, body: bytes = b"{}") -> UpstreamRequest:
    return UpstreamRequest(
        method="POST",
        url=server.url("/v1/chat/completions"),
        headers=[("content-type", "application/json")],
        content=body,
        stream=False,
        model="m",
    )


async def warm(client: UpstreamClient, server: Server) -> None:
    """One exchange, so that the pool keeps an idle connection."""
    response = await start_response(client, upstream(server))
    assert await response.aread() == b"ok"
    await response.aclose()
    assert client.engine.pool.idle == 1


async def test_a_request_on_an_idle_connection_is_written_before_the_task_runs(
    client: UpstreamClient,
) -> None:
    async with serving(answer(OK, requests=2)) as server:
        await warm(client, server)
        pool = client.engine.pool
        task = start_response(client, upstream(server))
        # Still this turn: the connection is lent and its request handed to the socket.
        assert (pool.active, pool.idle) == (1, 0)
        response = await task
        assert response.status_code == 200
        assert await response.aread() == b"ok"
        await response.aclose()
    assert server.connections == 1
    assert (pool.active, pool.idle) == (0, 1)
    assert len(server.heads) == 2


async def test_without_an_idle_connection_the_request_goes_the_usual_way(
    client: UpstreamClient,
) -> None:
    async with serving(answer(OK)) as server:
        sent = client.engine.send_now(client._request("POST", server.url(), [], b"{}"))
        assert sent is None  # nothing idle: the task connects
        response = await start_response(client, upstream(server))
        assert await response.aread() == b"ok"
        await response.aclose()
    assert server.connections == 1


async def test_a_large_body_keeps_the_write_timeout_path(client: UpstreamClient) -> None:
    async with serving(answer(OK, requests=2)) as server:
        await warm(client, server)
        big = client._request("POST", server.url(), [], b"x" * (SEND_NOW_BYTES + 1))
        assert client.engine.send_now(big) is None
        assert client.engine.pool.idle == 1  # not taken


async def test_cancelled_before_its_first_turn_the_connection_is_given_back(
    client: UpstreamClient,
) -> None:
    async with serving(answer(OK, requests=2)) as server:
        await warm(client, server)
        pool = client.engine.pool
        task = start_response(client, upstream(server))
        assert pool.active == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (pool.active, pool.idle) == (0, 0)  # released, and closed: its answer is unread


async def test_an_engine_that_drops_the_connection_is_the_proxys_502(
    client: UpstreamClient,
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(OK)
        await writer.drain()
        await s.read_request(reader)
        writer.transport.abort()  # the second request: no answer at all

    async with serving(script) as server:
        await warm(client, server)
        with pytest.raises(ProxyError) as caught:
            await start_response(client, upstream(server))
    assert caught.value.status == 502
    assert client.engine.pool.active == 0


async def test_a_refused_engine_is_the_proxys_502_from_the_task(client: UpstreamClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    request = UpstreamRequest("POST", f"http://127.0.0.1:{port}/v1/x", [], b"{}", False, "m")
    with pytest.raises(ProxyError) as caught:
        await start_response(client, request)
    assert caught.value.status == 502
