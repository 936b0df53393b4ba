"""A raw HTTP/1.1 server on a real socket that answers each connection with a script: the fake edge
for the client tests (``test_wire_http1``, ``test_proxy_transport``), which sends exactly the bytes
a test gives it, cut where the test cuts them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


@dataclass
class Server:
    """Answers each connection with ``script``; counts connections and records request heads."""

    script: Script
    connections: int = 0
    heads: list[bytes] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    def url(self, path: str = "/v1/x") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

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


def answer(raw: bytes, *, requests: int = 1, drip: int = 0) -> Script:
    """Answer ``requests`` requests on a connection with ``raw`` (``drip`` bytes per write, each
    write its own socket read on the client), then wait for the client to close.
    """

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server) -> None:
        for _ in range(requests):
            await s.read_request(reader)
            if drip:
                for at in range(0, len(raw), drip):
                    writer.write(raw[at : at + drip])
                    await writer.drain()
                    await asyncio.sleep(0.001)
            else:
                writer.write(raw)
            await writer.drain()
        await reader.read()  # until the client closes

    return script


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
