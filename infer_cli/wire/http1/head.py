"""The two heads of an exchange: the request head as written, the response head as parsed.

A response head decides how its body is framed (RFC 9112, section 6.3): no body (``HEAD``, 1xx,
204, 304), chunked, ``Content-Length``, or everything until the server closes the connection.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import httpx

from infer_cli.wire.http1.errors import BadResponse

MAX_HEAD_BYTES = 64 * 1024
"""Largest response head (status line and headers), and largest trailer section, accepted."""


class Framing(enum.Enum):
    NONE = "none"
    LENGTH = "length"
    CHUNKED = "chunked"
    UNTIL_CLOSE = "until-close"


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    version: bytes
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    """As sent: names in their case, values stripped of surrounding blanks."""
    framing: Framing
    length: int
    """The body's length when ``framing`` is ``LENGTH``."""
    keep_alive: bool
    """The connection may carry another request once this body is read."""


def parse_response_head(head: bytes, *, head_request: bool) -> ResponseHead | None:
    """The head of a response (without its final blank line); None for an informational one
    (100 Continue, 103 Early Hints), after which the real answer follows.
    """
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    version = parts[0]
    if (
        len(parts) < 2
        or version not in (b"HTTP/1.1", b"HTTP/1.0")
        or len(parts[1]) != 3
        or not parts[1].isdigit()
    ):
        raise BadResponse(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
    status = int(parts[1])
    if 100 <= status < 200 and status != 101:
        return None
    reason = parts[2] if len(parts) == 3 else b""
    headers: list[tuple[bytes, bytes]] = []
    length: bytes | None = None
    coded = chunked = False
    keep_alive = version == b"HTTP/1.1"
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name[-1:] in (b" ", b"\t") or line[:1] in (b" ", b"\t"):
            raise BadResponse(f"malformed header line: {line[:80]!r}")
        value = value.strip(b" \t")
        headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length":
            if length is not None and value != length:
                raise BadResponse("conflicting Content-Length headers")
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
    keep_alive = keep_alive and status != 101
    framing, size = Framing.UNTIL_CLOSE, 0
    if head_request or status in (101, 204, 304):
        framing = Framing.NONE
    elif coded:
        framing = Framing.CHUNKED if chunked else Framing.UNTIL_CLOSE
    elif length is not None:
        if not length.isdigit():
            raise BadResponse(f"invalid Content-Length: {length[:40]!r}")
        size = int(length)
        framing = Framing.LENGTH if size else Framing.NONE
    if framing is Framing.UNTIL_CLOSE:
        keep_alive = False
    return ResponseHead(status, version, reason, headers, framing, size, keep_alive)


def chunk_size(line: bytes) -> int:
    """The size on a chunk's size line (without its CRLF), extensions ignored."""
    size = line.split(b";", 1)[0].strip()
    if not size or len(size) > 16:
        raise BadResponse(f"invalid chunk size: {line[:40]!r}")
    try:
        return int(size, 16)
    except ValueError:
        raise BadResponse(f"invalid chunk size: {line[:40]!r}") from None


def request_head(method: str, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The request line and headers, as written (the caller supplies ``Host`` and the length)."""
    parts = [b"%b %b HTTP/1.1" % (method.encode("ascii"), target)]
    for name, value in headers:
        if b"\n" in value or b"\r" in value or b"\n" in name or b"\r" in name:
            raise httpx.LocalProtocolError(f"illegal header {name!r}: CR or LF in it")
        parts.append(b"%b: %b" % (name, value))
    parts.append(b"\r\n")
    return b"\r\n".join(parts)
