"""The load generator's HTTP: POST, then stream the answer, over :mod:`infer_cli.wire.http1`.

Why not httpx: measured here against the simulated engine (16-token streams, 32 in flight), httpx
spent about 4 ms of CPU per request and topped out near 230 requests/s on one core; a load
generator must not be the bottleneck it measures. This module only writes the request head once per
run, sends it on wire's connections (the same ones the proxy uses for its upstream), retries once a
reused connection that the server closed before answering, and turns wire's failures into the
kinds a run counts. Everything else (listing, health, metrics, tokenize) goes through httpx.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit

import httpx

from infer_cli import __version__
from infer_cli.wire.http1 import Connection, Disconnected, Origin
from infer_cli.wire.http1 import Pool as ConnectionPool


class HTTPFailure(Exception):
    """The exchange failed below HTTP: ``kind`` is ``connect``, ``disconnect`` or ``protocol``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _failure(exc: httpx.HTTPError, address: str) -> HTTPFailure:
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return HTTPFailure("connect", str(exc))
    if isinstance(exc, Disconnected | httpx.ReadError | httpx.WriteError):
        return HTTPFailure("disconnect", f"{address} closed the connection mid-answer: {exc}")
    return HTTPFailure("protocol", f"{address} answered with broken HTTP: {exc}")


class Response:
    """Status, headers, and the body as it arrives; give it back with :meth:`release`."""

    def __init__(
        self, pool: Pool, connection: Connection, status: int, headers: dict[str, str]
    ) -> None:
        self._pool = pool
        self._connection: Connection | None = connection
        self.status = status
        self.headers = headers

    async def iter_body(self) -> AsyncIterator[bytes]:
        """The body's pieces as they arrive (framing removed): whatever came in one socket read
        comes out as one piece (one timestamp), so a backlog costs one await, not one per chunk.
        """
        connection = self._connection
        assert connection is not None
        try:
            while data := await connection.read(None):
                yield data
        except httpx.HTTPError as exc:
            raise _failure(exc, self._pool.address) from None

    async def read(self) -> bytes:
        parts = [part async for part in self.iter_body()]
        return b"".join(parts)

    def release(self) -> None:
        """Back to the pool when the body was read whole and the server keeps the connection."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.connections.release(connection)


class Pool:
    """Keep-alive connections to the origin of ``url`` (at most ``size`` idle ones are kept)."""

    def __init__(
        self,
        url: str,
        *,
        size: int,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        host_header = f"[{self.host}]" if ":" in self.host else self.host
        if not default_port:
            host_header += f":{self.port}"
        self.origin: Origin = (parts.scheme.encode(), self.host.encode("idna"), self.port)
        self.connect_timeout = connect_timeout
        self.connections = ConnectionPool(max_connections=None, max_idle=size)
        lines = [f"Host: {host_header}", f"User-Agent: infer-bench/{__version__}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self._extra = ("\r\n".join(lines) + "\r\n").encode("latin-1")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def head(self, method: str, path: str, content_type: str, length: int) -> bytes:
        """The request line and headers for a body of ``length`` bytes."""
        return (
            f"{method} {path} HTTP/1.1\r\n".encode("latin-1")
            + self._extra
            + f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n".encode("latin-1")
        )

    async def request(self, head: bytes, body: bytes) -> Response:
        """Send ``head`` + ``body``; return once the status line and headers are in."""
        connections = self.connections
        for attempt in (0, 1):
            try:
                connection = await connections.acquire(
                    self.origin, connect_timeout=self.connect_timeout, pool_timeout=None
                )
            except httpx.HTTPError as exc:
                raise _failure(exc, self.address) from None
            try:
                await connection.send(head + body)
                answer = await connection.response_head(None)
            except (Disconnected, httpx.ReadError, httpx.WriteError) as exc:
                connection.close()
                connections.release(connection)
                if connection.requests > 1 and attempt == 0:
                    continue  # the server closed an idle keep-alive connection: once more
                raise _failure(exc, self.address) from None
            except BaseException as exc:
                connection.close()
                connections.release(connection)
                if isinstance(exc, httpx.HTTPError):
                    raise _failure(exc, self.address) from None
                raise
            headers = {
                name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in answer.headers
            }
            return Response(self, connection, answer.status, headers)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self.connections.close()
