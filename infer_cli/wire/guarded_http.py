"""What a client connection may cost the proxy before the app sees a request: the HTTP protocol
uvicorn runs on every accepted socket, with bounds.

uvicorn's httptools protocol buffers a request head without limit and waits for it, and for a body,
forever. :class:`GuardedHttpProtocol` is that protocol with :class:`ConnectionLimits`:

- the head (request line and headers) is counted as its bytes arrive: more than ``max_head_bytes``
  or ``max_header_lines`` is a 431, a URL longer than ``max_url_bytes`` a 414;
- a head must be complete ``header_timeout`` seconds after the connection opened (or after the
  first byte of a later request on it), a body ``body_timeout`` seconds after its head: else 408;
- a connection beyond ``max_connections`` open ones is answered 503 at once and closed, before
  anything of it is read (uvicorn's ``limit_concurrency`` reads the whole head first, and counts
  requests in flight rather than sockets);
- a request the HTTP parser rejects (``Content-Length`` with ``Transfer-Encoding``, two
  ``Content-Length``) is a 400 naming the parser's reason, instead of uvicorn's plain text.

Every refusal is the proxy's error JSON with ``Connection: close``, and the connection is closed.
The checks run while a head is read and when a timer fires: once a request is in, a streamed answer
costs nothing more per chunk. Each request's scope carries a
:class:`~infer_cli.wire.chunk_writer.ChunkWriter`, for an app that streams a body from callbacks.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from infer_cli.errors import UsageError
from infer_cli.wire.chunk_writer import EXTENSION, ChunkWriter
from infer_cli.wire.error_document import error_body

log = logging.getLogger("infer.proxy")

LINGER_SECONDS = 1.0
"""How long a refused connection is drained before it is closed: closing a socket with unread
input resets it, and the client would see a reset instead of the answer."""


@dataclass(frozen=True)
class ConnectionLimits:
    """Bounds on one client connection (``[proxy]`` in a profile)."""

    max_head_bytes: int = 64 * 1024
    """Request line and headers together; more: 431."""
    max_header_lines: int = 100
    """Header lines of one request; more: 431."""
    max_url_bytes: int = 8 * 1024
    """The request target (path and query); longer: 414."""
    header_timeout: float = 10.0
    """Seconds from a connection's opening (or a later request's first byte) to its whole head."""
    body_timeout: float = 60.0
    """Seconds from a complete head to the last byte of the body."""
    max_connections: int = 1024
    """Client connections open at once; one more is answered 503 and closed."""

    def __post_init__(self) -> None:
        for name in ("max_head_bytes", "max_header_lines", "max_url_bytes", "max_connections"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"proxy.{name} must be a positive integer, got {value!r}")
        for name in ("header_timeout", "body_timeout"):
            if not getattr(self, name) > 0:
                raise UsageError(f"proxy.{name} must be a positive number of seconds")


class _Refusal(Exception):
    """Raised from a parser callback: answer ``status`` with ``message`` and close."""

    def __init__(self, status: int, message: str, metadata: dict[str, Any]) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.metadata = metadata


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds of :class:`ConnectionLimits`."""

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._in_head = True
        self._head_seen = 0
        """Bytes received since the current head began (a bound on what the parser buffers)."""
        self._head_size = 0
        """The current head's URL and header lines, counted exactly as the parser reports them."""
        self._header_lines = 0
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False

    # --- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limit = self._limits.max_connections
        if len(self.connections) > limit:
            self._refuse(
                503,
                f"the server has {limit} connections open, its limit; retry shortly",
                {"max_connections": limit},
                headers=b"retry-after: 1\r\n",
                linger=False,  # lingering would hold a descriptor beyond the cap for each
            )
            return
        self._arm(self._limits.header_timeout, self._head_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # draining a refused connection
        if self._in_head:
            self._head_seen += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, _Refusal):
                self._refuse(cause.status, cause.message, cause.metadata)
            else:
                reason = str(exc) or "malformed"
                self._refuse(400, f"the request is not valid HTTP/1.1: {reason}", {})
            return
        if self._in_head and self._head_seen > self._limits.max_head_bytes:
            self._refuse(*self._head_too_large())

    # --- parser callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_size = self._header_lines = 0
        if self._timer is None:
            self._arm(self._limits.header_timeout, self._head_too_slow)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_size += len(url)
        limit = self._limits.max_url_bytes
        if len(self.url) > limit:
            raise _Refusal(
                414, f"the request URL is longer than {limit} bytes", {"max_url_bytes": limit}
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_lines += 1
        self._head_size += len(name) + len(value) + 4
        limit = self._limits.max_header_lines
        if self._header_lines > limit:
            raise _Refusal(
                431,
                f"the request has more than {limit} header lines",
                {"max_header_lines": limit},
            )
        if self._head_size > self._limits.max_head_bytes:
            raise _Refusal(*self._head_too_large())
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_seen = 0
        self._disarm()
        self._arm(self._limits.body_timeout, self._body_too_slow)
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # a request (not an upgrade)
            extensions: dict[str, Any] = {EXTENSION: ChunkWriter(cycle)}
            self.scope["extensions"] = extensions

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head = True
        self._head_seen = 0
        super().on_message_complete()

    # --- refusals -------------------------------------------------------------------------------

    def _head_too_large(self) -> tuple[int, str, dict[str, Any]]:
        limit = self._limits.max_head_bytes
        return (
            431,
            f"the request head (request line and headers) is larger than {limit} bytes",
            {"max_head_bytes": limit},
        )

    def _head_too_slow(self) -> None:
        self._timer = None
        seconds = self._limits.header_timeout
        self._refuse(
            408,
            f"the request head did not arrive within {seconds:g} s",
            {"header_timeout": seconds},
        )

    def _body_too_slow(self) -> None:
        self._timer = None
        seconds = self._limits.body_timeout
        self._refuse(
            408,
            f"the request body did not arrive within {seconds:g} s",
            {"body_timeout": seconds},
        )

    def _refuse(
        self,
        status: int,
        message: str,
        metadata: dict[str, Any],
        *,
        headers: bytes = b"",
        linger: bool = True,
    ) -> None:
        """Answer ``status`` unless a response is under way, then close the connection."""
        if self._refused:
            return
        self._refused = True
        self._disarm()
        transport = self.transport
        if transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The app is waiting for this request's body, or answering it: it sees a disconnect.
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started:
                transport.close()
                return
        log.debug("refused a connection: %s %s", status, message)
        transport.write(_answer(status, message, metadata, headers))
        self.flow.resume_reading()  # drain what the client still sends, then close
        if linger and transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()

    def _arm(self, seconds: float, callback: Any) -> None:
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _answer(status: int, message: str, metadata: dict[str, Any], headers: bytes) -> bytes:
    body = json.dumps(error_body(status, message, metadata=metadata)).encode()
    phrase = http.HTTPStatus(status).phrase.encode()
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, phrase),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n",
            headers,
            b"\r\n",
            body,
        )
    )
