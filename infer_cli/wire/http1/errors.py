"""How an exchange fails below HTTP, in httpx's exception vocabulary.

The connection and the pool raise httpx's own classes (``ConnectError``, ``ConnectTimeout``,
``ReadTimeout``, ``WriteTimeout``, ``PoolTimeout``, ``ReadError``, ``WriteError``), so that the
proxy's httpx transport built on them cannot be told from httpcore. Two subclasses of
``RemoteProtocolError`` say which of its two meanings applies, for callers (the load generator)
that count them apart. These are transport errors, like httpx's: the proxy turns them into its
error document and the load generator into a failed request's kind; no user sees them raw.
"""

from __future__ import annotations

import httpx


class Disconnected(httpx.RemoteProtocolError):
    """The server closed the connection before its answer (head or body) was complete."""


class BadResponse(httpx.RemoteProtocolError):
    """The server's bytes are not a valid HTTP/1.1 response."""


__all__ = ["BadResponse", "Disconnected"]
