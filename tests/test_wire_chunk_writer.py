"""wire's :class:`~infer_cli.wire.chunk_writer.ChunkWriter`, as infer's own server offers it to an
app: ready only between the start and the end of a chunked response, its chunks framed into the
body the client reads, nothing written once the client is gone. A tiny ASGI app on
:class:`~infer_cli.wire.server.AppServer` reports what it saw; clients are real sockets.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from infer_cli.wire.chunk_writer import chunk_writer
from infer_cli.wire.server import AppServer, bind


class Probe:
    """An ASGI app that uses the request's writer and notes what it saw, by path."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}
        self.done = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        writer = chunk_writer(scope)
        assert writer is not None
        seen = self.seen
        seen["before start"] = writer.ready
        chunked = scope["path"] != "/length"
        headers = [] if chunked else [(b"content-length", b"11")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        seen["after start"] = writer.ready
        if scope["path"] == "/gone":
            seen["first write"] = writer.write(b"first")
            while (await receive())["type"] != "http.disconnect":
                pass
            seen["closed"], seen["ready when gone"] = writer.closed, writer.ready
            seen["late write"] = writer.write(b"late")
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        elif chunked:
            seen["write"] = writer.write(b"hello ")
            seen["empty write"] = writer.write(b"")
            await send({"type": "http.response.body", "body": b"world", "more_body": False})
        else:
            await send({"type": "http.response.body", "body": b"hello world", "more_body": False})
        seen["after end"] = writer.ready
        self.done.set()


@pytest.fixture
async def served() -> AsyncIterator[tuple[Probe, str]]:
    probe = Probe()
    server = AppServer(probe, bind("127.0.0.1", 0))
    await server.start()
    try:
        yield probe, server.url
    finally:
        await server.stop()


async def test_the_writer_is_ready_only_inside_a_chunked_response(
    served: tuple[Probe, str],
) -> None:
    probe, url = served
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=5) as http:
        response = await http.get("/chunked")
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.content == b"hello world"
        await asyncio.wait_for(probe.done.wait(), 5)
        assert probe.seen == {
            "before start": False,
            "after start": True,
            "write": True,
            "empty write": True,
            "after end": False,
        }
        probe.seen.clear()
        response = await http.get("/length")
        assert response.content == b"hello world"
        assert probe.seen["after start"] is False  # a Content-Length body is not the writer's


async def test_a_write_after_the_client_went_away_returns_false(
    served: tuple[Probe, str],
) -> None:
    probe, url = served
    host, port = url.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, int(port)))
        await loop.sock_sendall(sock, b"GET /gone HTTP/1.1\r\nHost: %b\r\n\r\n" % host.encode())
        raw = b""
        while b"first" not in raw:
            piece = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
            assert piece, raw
            raw += piece
    assert b"\r\n5\r\nfirst\r\n" in raw  # the write was framed as one chunk
    await asyncio.wait_for(probe.done.wait(), 5)
    assert probe.seen["first write"] is True
    assert (probe.seen["closed"], probe.seen["ready when gone"]) == (True, False)
    assert probe.seen["late write"] is False
