"""How much parsing one request body may cost: checked before the body is parsed.

Parsing JSON holds the event loop (and the GIL: a thread does not help), and its cost grows with
the number of values, not with the bytes: 10 MB of one long string parses in a few milliseconds,
10 MB of 200,000 tiny messages in half a second, during which every other stream stalls. So before
``json.loads``, :func:`check_shape` counts the body's values and its nesting with byte operations
that run in C (a few milliseconds for 10 MB, whatever its shape), and refuses a body with more
than ``max_json_values`` values (413) or nested deeper than ``max_json_depth`` (400). After
parsing, :func:`check_messages` refuses more than ``max_messages`` messages (400) before any
per-message work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infer_cli.errors import UsageError
from infer_cli.proxy.errors import PAYLOAD_TOO_LARGE, ProxyError

_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in b'[]{},:"')


@dataclass(frozen=True)
class BodyBounds:
    """Bounds on one request body (``[proxy]`` in a profile)."""

    max_json_values: int = 50_000
    """Values in the JSON body (object keys, strings, numbers, ..., each token id of a prompt)."""
    max_json_depth: int = 64
    """Nesting of objects and arrays."""
    max_messages: int = 2048
    """Messages of one chat request."""

    def __post_init__(self) -> None:
        for name in ("max_json_values", "max_json_depth", "max_messages"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"proxy.{name} must be a positive integer, got {value!r}")


def check_shape(raw: bytes, bounds: BodyBounds) -> None:
    """Raise a :class:`ProxyError` when ``raw`` (JSON text, valid or not) holds more values or
    deeper nesting than ``bounds`` allow. Its cost is a few passes of C over the bytes.

    Escaped quotes and backslashes (which hide where strings end) count as values too: a body
    with more of them than ``max_json_values`` is refused without looking further.
    """
    limit = bounds.max_json_values
    text = raw
    if b"\\" in text:
        escapes = text.count(b"\\\\") + text.count(b'\\"')
        if escapes > limit:
            raise _too_many(bounds)
        if escapes:
            # Escaped backslashes first, then escaped quotes: what remains of '"' delimits strings.
            text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    kept = text.translate(None, _NOT_STRUCTURE)
    quotes = kept.count(b'"')
    if quotes // 2 > limit:  # every string is a value
        raise _too_many(bounds)
    # Outside the strings (the even pieces between quotes) only the structure is left.
    structure = b"".join(kept.split(b'"')[0::2]) if quotes else kept
    # Every value but the root follows a ',' or ':' or is the first in its array or object (one
    # per container: counted by its closing bracket, so that an unclosed run of '[' is left to
    # json.loads to refuse as malformed).
    values = 1 + sum(structure.count(mark) for mark in (b"]", b"}", b",", b":"))
    if values > limit:
        raise _too_many(bounds)
    _check_depth(structure.translate(None, _NOT_BRACKETS), bounds.max_json_depth)


def check_messages(payload: Any, bounds: BodyBounds) -> None:
    """400 when a parsed request has more than ``max_messages`` messages."""
    messages = payload.get("messages") if isinstance(payload, dict) else None
    if isinstance(messages, list) and len(messages) > bounds.max_messages:
        raise ProxyError(
            400,
            f"the request has {len(messages)} messages; at most {bounds.max_messages} "
            "are accepted (proxy.max_messages)",
            metadata={"max_messages": bounds.max_messages},
        )


def _check_depth(brackets: bytes, limit: int) -> None:
    # Each pass removes the innermost pairs; a body nested ``limit`` deep is empty after
    # ``limit`` passes. What stays and no pass can shorten is not balanced: json.loads says so.
    for _ in range(limit):
        shorter = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if len(shorter) == len(brackets):
            return
        brackets = shorter
    if brackets and len(brackets.replace(b"[]", b"").replace(b"{}", b"")) < len(brackets):
        raise ProxyError(
            400,
            f"the request body is nested deeper than {limit} levels (proxy.max_json_depth)",
            metadata={"max_json_depth": limit},
        )


def _too_many(bounds: BodyBounds) -> ProxyError:
    limit = bounds.max_json_values
    return ProxyError(
        413,
        f"the request body holds more than {limit} JSON values (proxy.max_json_values)",
        error_type=PAYLOAD_TOO_LARGE,
        metadata={"max_json_values": limit},
    )
