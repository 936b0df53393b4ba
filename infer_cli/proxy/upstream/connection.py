"""One HTTP/1.1 connection to the engine: it sends a request and parses the response as it comes.

Each connection is an asyncio protocol that parses the response as its bytes arrive (status line,
headers, then a body framed by ``Content-Length``, chunked encoding or the connection's end) and
hands body bytes to the reader as they come, with no copy per layer. A connection the engine
closed is known closed at once (the protocol sees the EOF). Failures and timeouts are httpx's
exceptions, as httpcore raises them. The pool that lends these connections out is
:mod:`infer_cli.proxy.upstream.transport`.
"""

from __future__ import annotations

import asyncio
import collections
import select
from collections.abc import Callable
from typing import cast

import httpx

Origin = tuple[bytes, bytes, int]

MAX_HEAD_BYTES = 64 * 1024
"""Largest response head (status line and headers) accepted."""
READ_AHEAD_BYTES = 256 * 1024
"""Body bytes read ahead of the reader before the connection stops reading."""

# What a connection is waiting for.
_IDLE, _HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS = range(7)
_UNTIL_CLOSE, _DONE = 7, 8


_TIMER_SLACK = 0.001
"""Timers may fire this early; a deadline due that soon has passed."""


class _BadResponse(Exception):
    """The engine's bytes are not a valid HTTP/1.1 response."""


class UpstreamConnection(asyncio.Protocol):
    """One connection: sends a request, parses its response, feeds the body to one reader."""

    def __init__(self, origin: Origin, loop: asyncio.AbstractEventLoop) -> None:
        self.origin = origin
        self.idle_since = 0.0
        self.requests = 0
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._closed = False
        self._state = _IDLE
        self._rest = b""
        self._remaining = 0
        self._head_request = False
        self._keep_alive = True
        self._head: tuple[int, bytes, bytes, list[tuple[bytes, bytes]]] | None = None
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
        self.on_lost: Callable[[UpstreamConnection], None] | None = None

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
        except _BadResponse as exc:
            self._fail(httpx.RemoteProtocolError(str(exc)))
            self.close()

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
                self._fail(
                    httpx.RemoteProtocolError("Server disconnected without sending a response.")
                )
            else:
                self._fail(
                    httpx.RemoteProtocolError(
                        "peer closed connection without sending complete message body"
                    )
                )
        self._wake()
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
        )

    def alive(self) -> bool:
        """Not closed, and nothing (an EOF, stray bytes) waiting unread on the socket: the event
        loop may not have read what the engine sent while this connection sat idle.
        """
        return not self._closed and self._fd >= 0 and not _readable(self._fd)

    def close(self) -> None:
        self._closed = True
        self._stop_timer()
        if self._transport is not None:
            self._transport.close()

    # --- one exchange ---------------------------------------------------------------------------

    async def send(self, request: httpx.Request, head: bytes, write_timeout: float | None) -> None:
        """Write ``request`` (its ``head`` already serialised); the response is read as it comes."""
        transport = self._transport
        if transport is None or self._closed:
            raise httpx.WriteError("the connection to the engine is closed")
        self._state = _HEAD
        self._head = None
        self._error = None
        self._keep_alive = True
        self._head_request = request.method == "HEAD"
        self.requests += 1
        try:
            body = request.content
        except httpx.RequestNotRead:
            transport.write(head)
            await self._write_stream(request, write_timeout)
        else:
            transport.write(head + body if body else head)
            await self._drain(write_timeout)

    async def _write_stream(self, request: httpx.Request, write_timeout: float | None) -> None:
        transport = self._transport
        assert transport is not None
        stream = request.stream
        if not isinstance(stream, httpx.AsyncByteStream):
            raise httpx.LocalProtocolError("the request body is not an async stream")
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        async for part in stream:
            if not part:
                continue
            transport.write(b"%x\r\n%b\r\n" % (len(part), part) if chunked else part)
            await self._drain(write_timeout)
        if chunked:
            transport.write(b"0\r\n\r\n")
            await self._drain(write_timeout)

    async def _drain(self, timeout: float | None) -> None:
        if not self._writing_paused or self._closed:
            return
        drained = self._drained = self._loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await drained
        except TimeoutError:
            raise httpx.WriteTimeout("the engine did not take the request in time") from None
        finally:
            self._drained = None

    async def response_head(
        self, timeout: float | None
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
        """Status, HTTP version, reason and headers, once they arrived."""
        while self._head is None:
            if self._error is not None:
                raise self._error
            if not await self._wait(timeout):
                raise httpx.ReadTimeout("the engine sent no response in time")
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
                raise httpx.ReadTimeout("the engine sent nothing in time")

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
        """Wait for news from the engine: False when ``timeout`` passed first.

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

    def _deliver(self, data: bytes) -> None:
        self._body.append(data)
        self._queued += len(data)
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
        while pos < end:
            state = self._state
            if state == _CHUNK_SIZE:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos > 1024:
                        raise _BadResponse("chunk size line too long")
                    break
                size = _chunk_size(data[pos:eol])
                pos = eol + 2
                if size:
                    self._remaining, self._state = size, _CHUNK_DATA
                else:
                    self._state = _TRAILERS
            elif state == _CHUNK_DATA:
                stop = min(end, pos + self._remaining)
                self._deliver(data[pos:stop] if pos or stop < end else data)
                self._remaining -= stop - pos
                pos = stop
                if not self._remaining:
                    self._state = _CHUNK_END
            elif state == _CHUNK_END:
                if end - pos < 2:
                    break
                if data[pos : pos + 2] != b"\r\n":
                    raise _BadResponse("a chunk does not end with CRLF")
                pos += 2
                self._state = _CHUNK_SIZE
            elif state == _LENGTH:
                stop = min(end, pos + self._remaining)
                self._deliver(data[pos:stop] if pos or stop < end else data)
                self._remaining -= stop - pos
                pos = stop
                if not self._remaining:
                    self._finish()
            elif state == _UNTIL_CLOSE:
                self._deliver(data[pos:] if pos else data)
                pos = end
            elif state == _HEAD:
                stop = data.find(b"\r\n\r\n", pos)
                if stop < 0:
                    if end - pos > MAX_HEAD_BYTES:
                        raise _BadResponse("the response head is too large")
                    break
                self._parse_head(data[pos:stop])
                pos = stop + 4
            elif state == _TRAILERS:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos > MAX_HEAD_BYTES:
                        raise _BadResponse("the trailers are too large")
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

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        version = parts[0]
        if (
            len(parts) < 2
            or version not in (b"HTTP/1.1", b"HTTP/1.0")
            or len(parts[1]) != 3
            or not parts[1].isdigit()
        ):
            raise _BadResponse(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
        status = int(parts[1])
        reason = parts[2] if len(parts) == 3 else b""
        if 100 <= status < 200 and status != 101:
            return  # informational (100 Continue, 103 Early Hints): the answer follows
        headers: list[tuple[bytes, bytes]] = []
        length: bytes | None = None
        chunked = False
        coded = False
        keep_alive = version == b"HTTP/1.1"
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name[-1:] in (b" ", b"\t") or line[:1] in (b" ", b"\t"):
                raise _BadResponse(f"malformed header line: {line[:80]!r}")
            value = value.strip(b" \t")
            headers.append((name, value))
            lower = name.lower()
            if lower == b"content-length":
                if length is not None and value != length:
                    raise _BadResponse("conflicting Content-Length headers")
                length = value
            elif lower == b"transfer-encoding":
                coded = True
                chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            elif lower == b"connection":
                tokens = {token.strip().lower() for token in value.split(b",")}
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
        self._keep_alive = keep_alive and status != 101
        self._head = (status, version, reason, headers)
        if self._head_request or status in (101, 204, 304):
            self._finish()
        elif coded:
            if chunked:
                self._state = _CHUNK_SIZE
            else:
                self._state, self._keep_alive = _UNTIL_CLOSE, False
        elif length is not None:
            if not length.isdigit():
                raise _BadResponse(f"invalid Content-Length: {length[:40]!r}")
            self._remaining = int(length)
            if self._remaining:
                self._state = _LENGTH
            else:
                self._finish()
        else:
            self._state, self._keep_alive = _UNTIL_CLOSE, False
        self._wake()


def _chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].strip()
    if not size or len(size) > 16:
        raise _BadResponse(f"invalid chunk size: {line[:40]!r}")
    try:
        return int(size, 16)
    except ValueError:
        raise _BadResponse(f"invalid chunk size: {line[:40]!r}") from None


def _readable(fd: int) -> bool:
    """Whether a read on ``fd`` would not block (data, or the peer's EOF), without reading."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)  # Windows: no poll, but select takes sockets
    return bool(readable)


def request_head(request: httpx.Request) -> bytes:
    """The request line and headers, as sent."""
    parts = [b"%b %b HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
    for name, value in request.headers.raw:
        if b"\n" in value or b"\r" in value or b"\n" in name or b"\r" in name:
            raise httpx.LocalProtocolError(f"illegal header {name!r}: CR or LF in it")
        parts.append(b"%b: %b" % (name, value))
    parts.append(b"\r\n")
    return b"\r\n".join(parts)
