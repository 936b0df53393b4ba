"""Writing a streamed response's body to the client's socket from a callback, past the ASGI stack.

An ASGI body chunk travels through every middleware's ``send`` and the server's own before it
reaches the socket: a coroutine per layer, for each of the tens of chunks per second of every
stream. The server protocol (:class:`~infer_cli.wire.guarded_http.GuardedHttpProtocol`) offers each
request a :class:`ChunkWriter` in ``scope["extensions"][EXTENSION]``: once the app sent
``http.response.start`` through ``send`` (so that every middleware saw the status and headers),
it may write body chunks with :meth:`ChunkWriter.write`, a plain call that frames the bytes as a
chunk and hands them to the transport, and must end the body with ``send`` as usual (the
middleware and the server see the response complete).

The writer respects the server's flow control (:attr:`ChunkWriter.paused`, :meth:`drain`) and
writes nothing once the client is gone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

EXTENSION = "infer.chunk_writer"
"""The key of the request's :class:`ChunkWriter` in ``scope["extensions"]``."""


class ChunkWriter:
    """Body chunks of one response, straight to its connection: see the module's docstring."""

    __slots__ = ("_cycle", "_flow", "_transport")

    def __init__(self, cycle: RequestResponseCycle) -> None:
        self._cycle = cycle
        self._transport = cycle.transport
        self._flow = cycle.flow

    @property
    def ready(self) -> bool:
        """The response started, chunked, and is not over: :meth:`write` may be used."""
        cycle = self._cycle
        return (
            cycle.response_started
            and cycle.chunked_encoding is True
            and not cycle.response_complete
            and not cycle.disconnected
        )

    @property
    def closed(self) -> bool:
        """The client is gone: what is written goes nowhere."""
        return self._cycle.disconnected or self._transport.is_closing()

    @property
    def paused(self) -> bool:
        """The client reads slower than the body comes: wait with :meth:`drain` before more."""
        return bool(self._flow.write_paused)

    def write(self, data: bytes) -> bool:
        """Send ``data`` as one chunk of the body; False (nothing sent) once the client is gone
        or the response is over."""
        if self.closed or self._cycle.response_complete:
            return False
        if data:
            self._transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        return True

    async def drain(self) -> None:
        """Until the client took enough of what was written (or went away)."""
        if self._flow.write_paused and not self._cycle.disconnected:
            await self._flow.drain()


def chunk_writer(scope: Any) -> ChunkWriter | None:
    """The request's writer, when its server offers one (the proxy's own server does; an ASGI test
    transport or another server does not)."""
    extensions = scope.get("extensions")
    if not extensions:
        return None
    writer = extensions.get(EXTENSION)
    return writer if isinstance(writer, ChunkWriter) else None
