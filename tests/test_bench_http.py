"""The load generator's HTTP over wire's connections, against a scripted server: what it adds to
wire (its request head, one resend on a reused connection the server dropped, failure kinds).
"""

from __future__ import annotations

import asyncio

import pytest

from infer_cli.bench.http import HTTPFailure, Pool
from tests.scripted_server import OK, Server, answer, serving


async def post(pool: Pool, body: bytes = b"{}") -> tuple[int, bytes]:
    response = await pool.request(pool.head("POST", "/v1/x", "application/json", len(body)), body)
    try:
        return response.status, await response.read()
    finally:
        response.release()


async def test_requests_share_a_keep_alive_connection_with_the_run_s_headers() -> None:
    async with serving(answer(OK, requests=3)) as server:
        pool = Pool(server.url(), size=2, headers={"Authorization": "Bearer k"})
        for _ in range(3):
            assert await post(pool) == (200, b"ok")
        pool.close()
    assert server.connections == 1
    head = server.heads[0]
    assert head.startswith(b"POST /v1/x HTTP/1.1\r\n")
    assert f"\r\nHost: 127.0.0.1:{server.port}\r\n".encode() in head
    assert b"\r\nAuthorization: Bearer k\r\n" in head
    assert b"\r\nContent-Length: 2\r\n\r\n" in head


async def test_a_reused_connection_dropped_before_the_answer_is_sent_once_more() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        if s.connections == 1:
            await s.read_request(reader)
            writer.write(OK)
            await s.read_request(reader)
            return  # the keep-alive time ran out just as the second request came: no answer
        await s.read_request(reader)
        writer.write(OK)
        await reader.read()

    async with serving(script) as server:
        pool = Pool(server.url(), size=1)
        assert await post(pool) == (200, b"ok")
        assert await post(pool) == (200, b"ok")
        pool.close()
    assert server.connections == 2 and len(server.heads) == 3


async def test_a_new_connection_dropped_before_the_answer_is_a_disconnect() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)

    async with serving(script) as server:
        pool = Pool(server.url(), size=1)
        with pytest.raises(HTTPFailure) as failure:
            await post(pool)
        pool.close()
    assert failure.value.kind == "disconnect"
    assert server.connections == 1


async def test_failures_have_the_kinds_a_run_counts() -> None:
    cut = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nabc"

    async def cuts(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        await s.read_request(reader)
        writer.write(cut)

    async with serving(cuts) as server:
        pool = Pool(server.url(), size=1)
        with pytest.raises(HTTPFailure) as failure:
            await post(pool)
        pool.close()
    assert failure.value.kind == "disconnect"
    assert "mid-answer" in str(failure.value)
    async with serving(answer(b"HTTP/1.1 OK\r\n\r\n")) as server:
        pool = Pool(server.url(), size=1)
        with pytest.raises(HTTPFailure) as failure:
            await post(pool)
        pool.close()
    assert failure.value.kind == "protocol"
    pool = Pool(server.url(), size=1)  # the server is gone
    with pytest.raises(HTTPFailure) as failure:
        await post(pool)
    assert failure.value.kind == "connect"
    assert f"127.0.0.1:{server.port}" in str(failure.value)


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="not an http"):
        Pool("ftp://host/", size=1)
