"""The proxy's connections to the engine: :mod:`infer_cli.wire.http1` as an httpx transport.

httpx's default transport (httpcore) re-examines every pooled connection whenever a request starts
or ends (with a ``poll`` system call for each idle one, and a scan of the whole pool for each), and
reads every chunk through anyio and h11. With a hundred streams in flight that was most of the
proxy's CPU. This transport, mounted for ``http://`` upstreams (loopback, normally), lends out
wire's connections (:class:`~infer_cli.wire.http1.Pool`), which parse the response as its bytes
arrive and hand body bytes to the reader with no copy per layer, and keeps httpx's timeouts
(connect, read, write, pool), limits and exceptions, so that the code above cannot tell it from
httpcore.

A response closed before its end closes its connection, so the engine sees the client go away. No
retries, no TLS (``https://`` upstreams keep httpx's own transport), no proxies, no HTTP/2.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from infer_cli.wire.http1 import Connection, Origin, Pool, request_head

SEND_NOW_BYTES = 64 * 1024
"""Largest request body :meth:`UpstreamTransport.send_now` writes without waiting for the socket to
take it (a completion request is a few kilobytes; a larger one keeps the write timeout)."""


class ResponseBody(httpx.AsyncByteStream):
    """A response's body as it arrives; closing it gives the connection back (or closes it)."""

    def __init__(self, pool: Pool, connection: Connection, timeout: float | None) -> None:
        self._pool = pool
        self._connection = connection
        self._timeout = timeout
        self._released = False

    @property
    def connection(self) -> Connection:
        """The connection the body arrives on (a :class:`~infer_cli.proxy.upstream.splice.Splice`
        takes it from there)."""
        return self._connection

    @property
    def timeout(self) -> float | None:
        """The read timeout: the longest silence allowed between two pieces of the body."""
        return self._timeout

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
        self.pool = Pool(
            max_connections=max_connections, max_idle=max_idle, keepalive_expiry=keepalive_expiry
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"this transport speaks http://, not {url.scheme}://")
        timeouts = request.extensions.get("timeout", {})
        origin: Origin = (url.raw_scheme, url.raw_host, url.port or 80)
        head = request_head(request.method, url.raw_path, request.headers.raw)
        pool = self.pool
        connection = await pool.acquire(
            origin, connect_timeout=timeouts.get("connect"), pool_timeout=timeouts.get("pool")
        )
        try:
            await _send(connection, request, head, request.method == "HEAD", timeouts.get("write"))
        except BaseException:
            connection.close()
            pool.release(connection)
            raise
        return await self._response(connection, timeouts.get("read"))

    def send_now(self, request: httpx.Request) -> Sent | None:
        """Write ``request`` at once, in the caller's turn of the event loop, when an idle
        connection is free and the body is whole and at most :data:`SEND_NOW_BYTES`; None when it
        cannot be (:meth:`handle_async_request` then waits for a slot, connects, or streams the
        body).

        A request sent from a new task leaves only on that task's first turn, one pass of the event
        loop later: with a hundred streams in flight, a pass is milliseconds, spent before the
        engine even sees the request.
        """
        url = request.url
        if url.scheme != "http":
            return None
        try:
            body = request.content
        except httpx.RequestNotRead:
            return None
        if len(body) > SEND_NOW_BYTES:
            return None
        origin: Origin = (url.raw_scheme, url.raw_host, url.port or 80)
        connection = self.pool.acquire_idle(origin)
        if connection is None:
            return None
        head = request_head(request.method, url.raw_path, request.headers.raw)
        try:
            connection.send_now(head + body, head_request=request.method == "HEAD")
        except BaseException:
            connection.close()
            self.pool.release(connection)
            raise
        return Sent(self, connection, request.extensions.get("timeout", {}).get("read"))

    async def _response(self, connection: Connection, timeout: float | None) -> httpx.Response:
        """The response to the request written on ``connection``, once its head arrived."""
        try:
            response = await connection.response_head(timeout)
        except BaseException:
            connection.close()
            self.pool.release(connection)
            raise
        return httpx.Response(
            response.status,
            headers=response.headers,
            stream=ResponseBody(self.pool, connection, timeout),
            extensions={"http_version": response.version, "reason_phrase": response.reason},
        )

    async def aclose(self) -> None:
        self.pool.close()


class Sent:
    """A request :meth:`UpstreamTransport.send_now` wrote: await :meth:`response`, or
    :meth:`abandon` it (which gives the connection back, closed, unless the response was awaited).
    """

    def __init__(
        self, transport: UpstreamTransport, connection: Connection, timeout: float | None
    ) -> None:
        self._transport = transport
        self._connection = connection
        self._timeout = timeout
        self._taken = False

    async def response(self) -> httpx.Response:
        self._taken = True
        return await self._transport._response(self._connection, self._timeout)

    def abandon(self) -> None:
        if not self._taken:
            self._taken = True
            self._connection.close()
            self._transport.pool.release(self._connection)


async def _send(
    connection: Connection,
    request: httpx.Request,
    head: bytes,
    bodiless: bool,
    timeout: float | None,
) -> None:
    """The request's head and body: whole when httpx holds it whole, else as its stream yields."""
    try:
        body = request.content
    except httpx.RequestNotRead:
        pass
    else:
        await connection.send(head + body if body else head, head_request=bodiless, timeout=timeout)
        return
    stream = request.stream
    if not isinstance(stream, httpx.AsyncByteStream):
        raise httpx.LocalProtocolError("the request body is not an async stream")
    await connection.send(head, head_request=bodiless, timeout=timeout)
    chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
    async for part in stream:
        if part:
            await connection.write(
                b"%x\r\n%b\r\n" % (len(part), part) if chunked else part, timeout
            )
    if chunked:
        await connection.write(b"0\r\n\r\n", timeout)
