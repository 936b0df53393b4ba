"""The proxy's connections to the engine: a lean HTTP/1.1 connection pool, as an httpx transport.

httpx's default transport (httpcore) re-examines every pooled connection whenever a request starts
or ends (with a ``poll`` system call for each idle one, and a scan of the whole pool for each), and
reads every chunk through anyio and h11. With a hundred streams in flight that was most of the
proxy's CPU. This transport, mounted for ``http://`` upstreams (loopback, normally), keeps what the
proxy needs and nothing else:

- idle connections on a stack per origin, the most recently used taken first and checked when
  taken: a connection the engine closed is known closed at once (the protocol sees the EOF);
- each connection is an asyncio protocol (:mod:`infer_cli.proxy.upstream.connection`) that parses
  the response as its bytes arrive and hands body bytes to the reader as they come, with no copy per
  layer;
- httpx's timeouts (connect, read, write, pool) and limits (connections; idle ones kept), and its
  exceptions, so that the code above cannot tell it from httpcore.

A response closed before its end closes its connection, so the engine sees the client go away. No
retries, no TLS (``https://`` upstreams keep httpx's own transport), no proxies, no HTTP/2.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator

import httpx

from infer_cli.proxy.upstream.connection import Origin, UpstreamConnection, request_head


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class ResponseBody(httpx.AsyncByteStream):
    """A response's body as it arrives; closing it gives the connection back (or closes it)."""

    def __init__(
        self, pool: UpstreamTransport, connection: UpstreamConnection, timeout: float | None
    ) -> None:
        self._pool = pool
        self._connection = connection
        self._timeout = timeout
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection, timeout = self._connection, self._timeout
        while chunk := await connection.read(timeout):
            yield chunk

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._pool.release(self._connection)


class UpstreamTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 without TLS, pooled: see the module's docstring."""

    def __init__(
        self,
        *,
        max_connections: int = 1024,
        max_idle: int = 256,
        keepalive_expiry: float = 30.0,
    ) -> None:
        self.max_connections = max_connections
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self._idle: dict[Origin, list[UpstreamConnection]] = {}
        self._idle_count = 0
        self._active = 0
        """Connections lent to a request (being connected, or carrying an exchange)."""
        self._waiting: collections.deque[asyncio.Future[bool]] = collections.deque()
        self._closed = False

    @property
    def active(self) -> int:
        return self._active

    @property
    def idle(self) -> int:
        return self._idle_count

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"this transport speaks http://, not {url.scheme}://")
        timeouts = request.extensions.get("timeout", {})
        origin: Origin = (url.raw_scheme, url.raw_host, url.port or 80)
        head = request_head(request)
        await self._acquire(timeouts.get("pool"))
        connection: UpstreamConnection | None = None
        try:
            connection = self._take_idle(origin)
            if connection is None:
                connection = await self._connect(origin, url.host, timeouts.get("connect"))
            await connection.send(request, head, timeouts.get("write"))
            status, version, reason, headers = await connection.response_head(timeouts.get("read"))
        except BaseException:
            if connection is not None:
                connection.close()
            self._release_slot()
            raise
        return httpx.Response(
            status,
            headers=headers,
            stream=ResponseBody(self, connection, timeouts.get("read")),
            extensions={"http_version": version, "reason_phrase": reason},
        )

    def release(self, connection: UpstreamConnection) -> None:
        """A response is closed: its connection goes back to the pool, or is closed."""
        if not self._closed and self._idle_count < self.max_idle and connection.reusable():
            connection.idle_since = time.monotonic()
            connection.on_lost = self._forget
            self._idle.setdefault(connection.origin, []).append(connection)
            self._idle_count += 1
        else:
            connection.close()
        self._release_slot()

    async def aclose(self) -> None:
        self._closed = True
        for stack in self._idle.values():
            for connection in stack:
                connection.on_lost = None
                connection.close()
        self._idle.clear()
        self._idle_count = 0

    # --- slots and connections ------------------------------------------------------------------

    async def _acquire(self, timeout: float | None) -> None:
        if self._active < self.max_connections and not self._waiting:
            self._active += 1
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiting.append(waiter)
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            granted = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self._release_slot()  # handed over just as this request gave up
            else:
                self._discard(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if not granted:
            self._discard(waiter)
            raise httpx.PoolTimeout("every connection to the engine stayed busy")

    def _release_slot(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(True)  # the slot passes straight to the next in line
                return
        self._active -= 1

    def _discard(self, waiter: asyncio.Future[bool]) -> None:
        with contextlib.suppress(ValueError):
            self._waiting.remove(waiter)

    def _take_idle(self, origin: Origin) -> UpstreamConnection | None:
        stack = self._idle.get(origin)
        if not stack:
            if self._active + self._idle_count > self.max_connections:
                self._close_one_idle()
            return None
        oldest = time.monotonic() - self.keepalive_expiry
        while stack:
            connection = stack.pop()
            self._idle_count -= 1
            connection.on_lost = None
            if connection.idle_since >= oldest and connection.alive():
                return connection
            connection.close()
        return None

    def _close_one_idle(self) -> None:
        for stack in self._idle.values():
            if stack:
                connection = stack.pop(0)
                self._idle_count -= 1
                connection.on_lost = None
                connection.close()
                return

    def _forget(self, connection: UpstreamConnection) -> None:
        """An idle connection was closed by the engine: out of the pool."""
        stack = self._idle.get(connection.origin)
        if stack is not None and connection in stack:
            stack.remove(connection)
            self._idle_count -= 1
        connection.on_lost = None

    async def _connect(
        self, origin: Origin, host: str, timeout: float | None
    ) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: UpstreamConnection(origin, loop), host, origin[2]
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{origin[2]} in time") from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from None
        return connection
