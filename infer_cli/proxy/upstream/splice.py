"""A streamed completion relayed from callbacks: the engine's connection hands each read to the
exchange, which rewrites it, and the client's connection writes the result, all in the one event
loop callback that read the socket.

The plain way (the relay's loop over the body) wakes a task for every chunk, resumes the readers'
generators and passes the bytes down five ASGI ``send`` layers: at a hundred streams and more that
was half of the proxy's CPU beyond the sockets themselves, and the CPU it lacked became tail
latency. A :class:`Splice` needs both ends to offer callbacks: the engine's answer on infer's own
HTTP/1.1 connection (:meth:`~infer_cli.wire.http1.Connection.deliver_to`) and the client's request
on infer's own server (:class:`~infer_cli.wire.chunk_writer.ChunkWriter`); otherwise the relay
keeps its loop. What the client gets is the same either way: the exchange's events, a keep-alive
comment after every ``interval`` of silence, the mid-stream error event when the engine fails.

The relay's task waits, and is woken only for what a callback cannot do: wait for a slow client
to read (the engine's connection stops being read meanwhile) and the end.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx

from infer_cli.proxy import sse
from infer_cli.proxy.upstream.client import DRAIN_BYTES, DRAIN_SECONDS, upstream_error

if TYPE_CHECKING:
    from infer_cli.proxy.openrouter.exchange import Exchange
    from infer_cli.wire.chunk_writer import ChunkWriter
    from infer_cli.wire.http1 import Connection


class Splice:
    """One streamed completion from the engine's connection to the client's: see the module."""

    def __init__(
        self,
        connection: Connection,
        writer: ChunkWriter,
        exchange: Exchange,
        *,
        interval: float,
        first_after: float,
        read_timeout: float | None,
    ) -> None:
        self._connection = connection
        self._writer = writer
        self._exchange = exchange
        self._interval = interval
        self._read_timeout = read_timeout
        self._loop = loop = asyncio.get_running_loop()
        self._last = loop.time() - interval + max(0.0, first_after)
        """When the client was last sent something (a comment is due ``interval`` later)."""
        self._wake: asyncio.Future[None] = loop.create_future()
        self._done = False
        """The client's body is complete (or the client is gone): the relay may end it."""
        self._over = False
        """The exchange sent its last event; what the engine still sends is dropped."""
        self._dropped = 0
        self._failure: BaseException | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        """Relay until the client's body is complete; the engine's connection, read to its end,
        may then be released (one closed early is not reusable, and the pool closes it)."""
        loop, writer, connection = self._loop, self._writer, self._connection
        self._timer = loop.call_at(self._last + self._interval, self._on_quiet)
        try:
            connection.deliver_to(self, self._read_timeout)
            while not self._done:
                await self._wake
                self._wake = loop.create_future()
                if self._done:
                    break
                await writer.drain()  # the client fell behind: the engine waits with it
                connection.resume_reading()
            if self._failure is not None:
                raise self._failure
        finally:
            self._stop()

    # --- BodySink, called by the engine's connection ----------------------------------------

    def body(self, data: bytes) -> None:
        if self._done:
            return
        if self._over:
            self._dropped += len(data)
            if self._dropped > DRAIN_BYTES:
                self._finish()  # not worth reading on: the connection will be closed
            return
        try:
            out, ended = self._exchange.feed(data)
            if out:
                self._send(out)
            if ended:
                self._drop_rest()
        except Exception as exc:
            self._fail(exc)

    def ended(self, error: Exception | None) -> None:
        if self._done:
            return
        if not self._over:
            self._over = True  # the engine's part is over: nothing is held back from here
            exchange = self._exchange
            try:
                if isinstance(error, httpx.HTTPError):
                    failure = upstream_error(error, started=True)
                    out = exchange.stream_error(failure.status, failure.message, failure.error_type)
                elif error is not None:
                    raise error
                else:
                    out = exchange.end()
                self._send(out)
            except Exception as exc:
                self._fail(exc)
        self._finish()

    # --- the client's side ----------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        writer = self._writer
        if not writer.write(data):
            self._finish()  # the client is gone; the relay's watcher cancels the exchange
            return
        self._last = self._loop.time()
        if writer.paused and not self._over:
            self._connection.pause_reading()
            self._signal()

    def _on_quiet(self) -> None:
        """A keep-alive comment when the client was sent nothing for ``interval``."""
        self._timer = None
        if self._done or self._over:
            return
        loop = self._loop
        due = self._last + self._interval
        if loop.time() >= due - sse.EARLY:
            if self._writer.paused:
                self._last = loop.time()  # a client that is not reading is not waiting either
            else:
                try:
                    self._send(sse.KEEPALIVE_COMMENT)
                except Exception as exc:
                    self._fail(exc)
            due = self._last + self._interval
        if not self._done:
            self._timer = loop.call_at(due, self._on_quiet)

    # --- the end --------------------------------------------------------------------------------

    def _drop_rest(self) -> None:
        self._over = True
        self._connection.resume_reading()  # what is left is dropped, however slow the client
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(DRAIN_SECONDS, self._finish)

    def _fail(self, exc: Exception) -> None:
        """A bug in a callback: the relay raises it, and logs it as one of its own."""
        self._failure = exc
        self._finish()

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._signal()

    def _signal(self) -> None:
        if not self._wake.done():
            self._wake.set_result(None)

    def _stop(self) -> None:
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._connection.stop_delivery()
