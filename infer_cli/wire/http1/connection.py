"""One HTTP/1.1 client connection: it writes a request and parses the response as it comes.

Each connection is an asyncio protocol that parses the response as its bytes arrive (the head, then
a body framed by ``Content-Length``, chunked encoding or the connection's end) and hands body bytes
to the reader as they come: every piece that arrived since the last read comes out as one
``bytes``, with no copy per layer and one wake-up per socket read, however many chunks it held. A
connection the server closed is known closed at once (the protocol sees the EOF), and one that sat
idle is checked for a pending EOF without reading (:meth:`Connection.alive`). A reader that would
rather be called than wait hands the connection a :class:`BodySink` (:meth:`Connection.deliver_to`):
each socket read's body bytes then go straight to it from the protocol's callback, with no future,
no task wake-up and no read call per piece. Both hot paths speak
HTTP/1.1 through it: the proxy's upstream (as an httpx transport) and the load generator. The pool
that lends connections out is :mod:`infer_cli.wire.http1.pool`; failures and timeouts are httpx's
exceptions (:mod:`infer_cli.wire.http1.errors`).
"""

from __future__ import annotations

import asyncio
import collections
import select
from collections.abc import Callable
from typing import Protocol, cast

import httpx

from infer_cli.wire.http1.errors import BadResponse, Disconnected
from infer_cli.wire.http1.head import (
    MAX_HEAD_BYTES,
    Framing,
    ResponseHead,
    chunk_size,
    parse_response_head,
)

Origin = tuple[bytes, bytes, int]
"""Scheme, host and port: the connections to one origin are interchangeable."""

READ_AHEAD_BYTES = 256 * 1024
"""Body bytes read ahead of the reader before the connection stops reading the socket."""
MAX_CHUNK_LINE = 1024
"""Longest chunk-size line (size and extensions) accepted."""

# What a connection is waiting for.
_IDLE, _HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS = range(7)
_UNTIL_CLOSE, _DONE = 7, 8
_BODY_STATE = {
    Framing.LENGTH: _LENGTH,
    Framing.CHUNKED: _CHUNK_SIZE,
    Framing.UNTIL_CLOSE: _UNTIL_CLOSE,
}

_TIMER_SLACK = 0.001
"""Timers may fire this early; a deadline due that soon has passed."""


class BodySink(Protocol):
    """Where a connection in delivery mode puts a response's body (:meth:`Connection.deliver_to`).

    Both are called from the event loop's callbacks: they must not block, and may call the
    connection's :meth:`~Connection.pause_reading`, :meth:`~Connection.resume_reading` and
    :meth:`~Connection.close`.
    """

    def body(self, data: bytes) -> None:
        """Body bytes that arrived: everything since the last call, in one ``bytes``."""

    def ended(self, error: Exception | None) -> None:
        """The body is complete (``None``) or failed (httpx's exception); called once, last."""


class Connection(asyncio.Protocol):
    """One connection: writes a request, parses its response, feeds the body to one reader."""

    def __init__(self, origin: Origin, loop: asyncio.AbstractEventLoop) -> None:
        self.origin = origin
        self.idle_since = 0.0
        self.requests = 0
        """Requests sent on this connection so far: more than one means it was reused."""
        self.on_lost: Callable[[Connection], None] | None = None
        """Called once the connection closed (the pool drops an idle connection the server shut)."""
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._closed = False
        self._state = _IDLE
        self._rest = b""
        self._remaining = 0
        self._head_request = False
        self._keep_alive = True
        self._head: ResponseHead | None = None
        self._body: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._error: Exception | None = None
        self._waiter: asyncio.Future[bool] | None = None
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._fd = -1
        self._reading_paused = False
        self._writing_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._sink: BodySink | None = None
        self._sink_timeout: float | None = None
        self._last_read = 0.0
        self._held = False

    # --- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not derive from asyncio.Transport, but is one).
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None else -1

    def data_received(self, data: bytes) -> None:
        if self._rest:
            data, self._rest = self._rest + data, b""
        try:
            self._feed(data)
        except BadResponse as exc:
            self._fail(exc)
            self.close()
        if self._sink is not None:
            self._last_read = self._loop.time()
            self._pump()

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._stop_timer()
        state = self._state
        if state == _UNTIL_CLOSE and exc is None:
            self._finish()
        elif state not in (_IDLE, _DONE):
            if exc is not None:
                self._fail(httpx.ReadError(str(exc) or type(exc).__name__))
            elif state == _HEAD:
                self._fail(Disconnected("Server disconnected without sending a response."))
            else:
                self._fail(
                    Disconnected("peer closed connection without sending complete message body")
                )
        self._wake()
        if self._sink is not None:
            self._pump()
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)
        if self.on_lost is not None:
            self.on_lost(self)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    # --- the pool's side ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def reusable(self) -> bool:
        """The last response was read to its end and the connection may carry another."""
        return (
            not self._closed
            and self._state == _DONE
            and self._keep_alive
            and self._error is None
            and not self._body
            and not self._rest
            and not self._held
            and self._sink is None
        )

    def alive(self) -> bool:
        """Not closed, and nothing (an EOF, stray bytes) waiting unread on the socket: the event
        loop may not have read what the server sent while this connection sat idle.
        """
        return not self._closed and self._fd >= 0 and not _readable(self._fd)

    def close(self) -> None:
        self._closed = True
        self._stop_timer()
        if self._transport is not None:
            self._transport.close()

    # --- one exchange ---------------------------------------------------------------------------

    async def send(
        self, data: bytes, *, head_request: bool = False, timeout: float | None = None
    ) -> None:
        """Start an exchange with ``data`` (the request head, and its body or the start of it);
        the response is read as it comes. More of a streamed body goes through :meth:`write`.
        """
        self.send_now(data, head_request=head_request)
        await self.drain(timeout)

    def send_now(self, data: bytes, *, head_request: bool = False) -> None:
        """:meth:`send` without waiting for the send buffer: ``data`` is handed to the transport,
        which writes what the socket takes now and the rest as it can. For a request written whole
        (a small one: the transport buffers what the socket does not take)."""
        self._put(data)
        self._state = _HEAD
        self._head = None
        self._error = None
        self._keep_alive = True
        self._head_request = head_request
        self.requests += 1

    async def drain(self, timeout: float | None = None) -> None:
        """Wait (up to ``timeout``) while the send buffer is over its high-water mark."""
        if not self._writing_paused or self._closed:
            return
        drained = self._drained = self._loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await drained
        except TimeoutError:
            raise httpx.WriteTimeout("the server did not take the request in time") from None
        finally:
            self._drained = None

    async def write(self, data: bytes, timeout: float | None = None) -> None:
        """Write more of the request, waiting (up to ``timeout``) while the send buffer is full."""
        self._put(data)
        await self.drain(timeout)

    def _put(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or self._closed:
            raise httpx.WriteError("the connection is closed")
        transport.write(data)

    async def response_head(self, timeout: float | None) -> ResponseHead:
        """The response's status line and headers, once they arrived."""
        while self._head is None:
            if self._error is not None:
                raise self._error
            if not await self._wait(timeout):
                raise httpx.ReadTimeout("the server sent no response in time")
        return self._head

    async def read(self, timeout: float | None) -> bytes:
        """The body bytes that came since the last read (waiting for some); ``b""`` at its end."""
        while True:
            if self._body:
                return self._take()
            if self._error is not None:
                raise self._error
            if self._state == _DONE:
                return b""
            if not await self._wait(timeout):
                raise httpx.ReadTimeout("the server sent nothing in time")

    def deliver_to(self, sink: BodySink, timeout: float | None) -> None:
        """From now on, hand the response's body to ``sink`` as it arrives (what is queued at
        once), and its end or failure; ``timeout`` bounds a silence between two reads
        (``httpx.ReadTimeout``). Once the sink was told the end (the connection reading again if
        it was paused), it is released (or closed) as usual; a sink that gives up before the end
        calls :meth:`stop_delivery` first.
        """
        if self._head is None:
            raise RuntimeError("deliver_to() before the response's head arrived")
        self._sink = sink
        self._sink_timeout = timeout
        self._last_read = self._loop.time()
        if timeout is not None:
            self._stop_timer()
            self._timer = self._loop.call_at(self._last_read + timeout, self._on_silence)
        self._pump()

    def stop_delivery(self) -> None:
        """Let go of the sink before the end (its reader gave up): it hears nothing more."""
        if self._sink is not None:
            self._sink = None
            self._stop_timer()

    def pause_reading(self) -> None:
        """Stop reading the socket (the sink's own consumer is full); the server waits."""
        if not self._held and self._transport is not None and not self._closed:
            self._held = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._held:
            self._held = False
            if self._transport is not None and not self._closed:
                self._transport.resume_reading()
            self._last_read = self._loop.time()  # the silence was the consumer's, not the server's

    def _pump(self) -> None:
        """Delivery mode: hand over what is queued, then the end once there is one."""
        sink = self._sink
        if sink is None:
            return
        if self._body:
            sink.body(self._take())
        if self._sink is not sink:
            return  # the sink let go of the connection (stop_delivery) while taking the bytes
        if self._error is not None or self._state == _DONE:
            self._sink = None
            self._stop_timer()
            if self._held:  # paused for the last piece: the next exchange must be read
                self.resume_reading()
            sink.ended(self._error)

    def _on_silence(self) -> None:
        self._timer = None
        timeout = self._sink_timeout
        if self._sink is None or timeout is None:
            return
        due = self._last_read + timeout
        if self._held or self._loop.time() < due - _TIMER_SLACK:
            self._timer = self._loop.call_at(
                self._loop.time() + timeout if self._held else due, self._on_silence
            )
            return
        self._fail(httpx.ReadTimeout("the server sent nothing in time"))
        self._pump()

    def _take(self) -> bytes:
        body = self._body
        data = body.popleft() if len(body) == 1 else b"".join(body)
        body.clear()
        self._queued = 0
        if self._reading_paused and self._transport is not None and not self._closed:
            self._reading_paused = False
            self._transport.resume_reading()
        return data

    async def _wait(self, timeout: float | None) -> bool:
        """Wait for news from the server: False when ``timeout`` passed first.

        One timer per connection, not one per wait: a wait moves the deadline, and the timer,
        when it fires early, sets itself again for the deadline of the wait then in progress.
        """
        waiter: asyncio.Future[bool] = self._loop.create_future()
        self._waiter = waiter
        if timeout is not None:
            self._deadline = deadline = self._loop.time() + timeout
            timer = self._timer
            if timer is None or timer.when() > deadline:
                if timer is not None:
                    timer.cancel()
                self._timer = self._loop.call_at(deadline, self._on_timer)
        else:
            self._deadline = 0.0
        try:
            return await waiter
        finally:
            self._waiter = None

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done() or not self._deadline:
            return  # nobody waits with a deadline; the next wait sets a timer
        if self._loop.time() >= self._deadline - _TIMER_SLACK:
            waiter.set_result(False)
        else:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _delivered(self) -> None:
        """Body bytes were queued: stop reading past the read-ahead, wake the reader (once per
        socket read, however many chunks it held)."""
        if (
            self._queued > READ_AHEAD_BYTES
            and not self._reading_paused
            and self._transport is not None
        ):
            self._reading_paused = True
            self._transport.pause_reading()
        self._wake()

    def _finish(self) -> None:
        self._state = _DONE
        self._wake()

    # --- parsing --------------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        body = self._body
        queued = self._queued
        try:
            while pos < end:
                state = self._state
                if state == _CHUNK_SIZE:
                    eol = data.find(b"\r\n", pos)
                    if eol < 0:
                        if end - pos > MAX_CHUNK_LINE:
                            raise BadResponse("chunk size line too long")
                        break
                    try:  # the usual line: hex digits alone
                        if not 0 < eol - pos <= 16:
                            raise ValueError
                        size = int(data[pos:eol], 16)
                    except ValueError:  # extensions, or garbage
                        size = chunk_size(data[pos:eol])
                    pos = eol + 2
                    if size:
                        self._remaining, self._state = size, _CHUNK_DATA
                    else:
                        self._state = _TRAILERS
                elif state == _CHUNK_DATA:
                    stop = pos + self._remaining
                    if stop > end:
                        stop = end
                    body.append(data[pos:stop] if pos or stop < end else data)
                    queued += stop - pos
                    self._remaining -= stop - pos
                    pos = stop
                    if not self._remaining:
                        self._state = _CHUNK_END
                elif state == _CHUNK_END:
                    if end - pos < 2:
                        break
                    if data[pos : pos + 2] != b"\r\n":
                        raise BadResponse("a chunk does not end with CRLF")
                    pos += 2
                    self._state = _CHUNK_SIZE
                elif state == _LENGTH:
                    stop = pos + self._remaining
                    if stop > end:
                        stop = end
                    body.append(data[pos:stop] if pos or stop < end else data)
                    queued += stop - pos
                    self._remaining -= stop - pos
                    pos = stop
                    if not self._remaining:
                        self._finish()
                elif state == _UNTIL_CLOSE:
                    body.append(data[pos:] if pos else data)
                    queued += end - pos
                    pos = end
                elif state == _HEAD:
                    stop = data.find(b"\r\n\r\n", pos)
                    if stop < 0:
                        if end - pos > MAX_HEAD_BYTES:
                            raise BadResponse("the response head is too large")
                        break
                    head = parse_response_head(data[pos:stop], head_request=self._head_request)
                    self._start_body(head)
                    pos = stop + 4
                elif state == _TRAILERS:
                    eol = data.find(b"\r\n", pos)
                    if eol < 0:
                        if end - pos > MAX_HEAD_BYTES:
                            raise BadResponse("the trailers are too large")
                        break
                    if eol == pos:
                        self._finish()
                    pos = eol + 2
                else:  # _IDLE, _DONE: bytes that answer no request; the connection is not reused
                    self._keep_alive = False
                    self.close()
                    return
            if pos < end:
                self._rest = data[pos:]
        finally:
            if queued != self._queued:
                self._queued = queued
                self._delivered()

    def _start_body(self, head: ResponseHead | None) -> None:
        if head is None:
            return  # informational (100 Continue, 103 Early Hints): the answer follows
        self._head = head
        self._keep_alive = head.keep_alive
        if head.framing is Framing.NONE:
            self._finish()
            return
        self._state = _BODY_STATE[head.framing]
        self._remaining = head.length
        self._wake()


def _readable(fd: int) -> bool:
    """Whether a read on ``fd`` would not block (data, or the peer's EOF), without reading."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)  # Windows: no poll, but select takes sockets
    return bool(readable)
