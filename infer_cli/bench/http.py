"""A minimal HTTP/1.1 client for the load generator's hot path: POST, then stream the answer.

Why not httpx: measured here against the simulated engine (16-token streams, 32 in flight),
httpx spent about 4 ms of CPU per request and topped out near 230 requests/s on one core, while
this client spends about 0.5 ms; a load generator must not be the bottleneck it measures. It does
only what a benchmark needs: keep-alive connections in a pool sized to the concurrency, ``http``
and ``https``, chunked and ``Content-Length`` bodies, and a reused connection that the server had
closed while idle is retried once on a fresh one. Everything else (listing, health, metrics,
tokenize) goes through httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlsplit

from infer_cli import __version__

MAX_HEADER_LINES = 100


class HTTPFailure(Exception):
    """The exchange failed below HTTP: ``kind`` is ``connect``, ``disconnect`` or ``protocol``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Connection:
    __slots__ = ("reader", "reused", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):  # the loop may be closing
            self.writer.close()


class Response:
    """Status, headers, and the body as it arrives; give it back with :meth:`release`."""

    def __init__(self, pool: Pool, connection: Connection, status: int, headers: dict[str, str]):
        self._pool = pool
        self._connection: Connection | None = connection
        self.status = status
        self.headers = headers
        self._finished = False

    async def iter_body(self) -> AsyncIterator[bytes]:
        """The body's pieces as they arrive (chunked framing removed)."""
        connection = self._connection
        assert connection is not None
        reader = connection.reader
        try:
            if self.headers.get("transfer-encoding", "").lower().endswith("chunked"):
                async for data in _dechunk(reader):
                    yield data
            elif "content-length" in self.headers:
                left = int(self.headers["content-length"])
                while left > 0:
                    data = await reader.read(min(left, 65536))
                    if not data:
                        raise HTTPFailure("disconnect", "the server closed the connection")
                    left -= len(data)
                    yield data
            else:  # the body ends when the connection does
                self.headers["connection"] = "close"
                while data := await reader.read(65536):
                    yield data
        except asyncio.IncompleteReadError:
            raise HTTPFailure("disconnect", "the server closed the connection mid-answer") from None
        except (ConnectionError, OSError) as exc:
            raise HTTPFailure("disconnect", f"the connection broke: {exc}") from None
        self._finished = True

    async def read(self) -> bytes:
        parts = [part async for part in self.iter_body()]
        return b"".join(parts)

    def release(self) -> None:
        """Back to the pool when the body was read whole and the server keeps the connection."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._finished and self.headers.get("connection", "").lower() != "close":
            self._pool.give_back(connection)
        else:
            connection.close()


class Pool:
    """Keep-alive connections to one origin (at most ``size`` idle ones are kept)."""

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
        self.ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if parts.scheme == "https" else None
        )
        default_port = self.port == (443 if self.ssl else 80)
        host_header = self.host if default_port else f"{self.host}:{self.port}"
        if ":" in self.host and not self.host.startswith("["):
            host_header = f"[{self.host}]" + ("" if default_port else f":{self.port}")
        self.size = size
        self.connect_timeout = connect_timeout
        self._idle: list[Connection] = []
        lines = [f"Host: {host_header}", f"User-Agent: infer-bench/{__version__}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self._extra = ("\r\n".join(lines) + "\r\n").encode("latin-1")

    async def _connect(self) -> Connection:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                    limit=1 << 20,
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            raise HTTPFailure("connect", f"connecting to {self.address} timed out") from None
        except OSError as exc:
            raise HTTPFailure("connect", f"cannot connect to {self.address}: {exc}") from None
        return Connection(reader, writer)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def give_back(self, connection: Connection) -> None:
        if len(self._idle) < self.size and not connection.writer.is_closing():
            connection.reused = True
            self._idle.append(connection)
        else:
            connection.close()

    def head(self, method: str, path: str, content_type: str, length: int) -> bytes:
        """The request line and headers for a body of ``length`` bytes."""
        return (
            f"{method} {path} HTTP/1.1\r\n".encode("latin-1")
            + self._extra
            + f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n".encode("latin-1")
        )

    async def request(self, head: bytes, body: bytes) -> Response:
        """Send ``head`` + ``body``; return once the status line and headers are in."""
        for attempt in (0, 1):
            connection = self._idle.pop() if self._idle else await self._connect()
            try:
                connection.writer.write(head + body)
                status_line = await connection.reader.readline()
                if not status_line:
                    raise ConnectionResetError("closed before answering")
            except (ConnectionError, OSError) as exc:
                connection.close()
                if connection.reused and attempt == 0:
                    continue  # the server closed an idle keep-alive connection: once more
                raise HTTPFailure("disconnect", f"the connection broke: {exc}") from None
            try:
                status, headers = await _read_head(connection.reader, status_line)
            except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
                connection.close()
                raise HTTPFailure("disconnect", f"the connection broke: {exc}") from None
            except HTTPFailure:
                connection.close()
                raise
            return Response(self, connection, status, headers)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


async def _read_head(
    reader: asyncio.StreamReader, status_line: bytes
) -> tuple[int, dict[str, str]]:
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise HTTPFailure("protocol", f"not an HTTP answer: {status_line[:60]!r}")
    try:
        status = int(parts[1])
    except ValueError:
        raise HTTPFailure("protocol", f"bad status line {status_line[:60]!r}") from None
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        line = await reader.readline()
        if line in (b"\r\n", b"\n"):
            return status, headers
        if not line:
            raise HTTPFailure("disconnect", "the server closed the connection in the headers")
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    raise HTTPFailure("protocol", "too many header lines")


async def _dechunk(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """A chunked body, one piece per read from the socket: every chunk that arrived together
    comes out as one piece (one timestamp), so a backlog costs one await, not one per chunk."""
    buffer = bytearray()
    while True:
        pieces: list[bytes] = []
        while True:
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                break
            try:
                size = int(buffer[:line_end].split(b";", 1)[0], 16)
            except ValueError:
                raise HTTPFailure("protocol", f"bad chunk size {bytes(buffer[:40])!r}") from None
            if size == 0:
                end = buffer.find(b"\r\n\r\n", line_end)
                if end < 0:
                    break  # the last chunk's trailers are still coming
                if pieces:
                    yield b"".join(pieces)
                return
            start = line_end + 2
            if len(buffer) < start + size + 2:
                break
            pieces.append(bytes(buffer[start : start + size]))
            del buffer[: start + size + 2]
        if pieces:
            yield b"".join(pieces)
        data = await reader.read(65536)
        if not data:
            raise HTTPFailure("disconnect", "the server closed the connection mid-answer")
        buffer += data
