"""Server-sent events: the one codec the proxy, the client and the load generator read and write.

The framing is the WHATWG event-stream format, as far as OpenAI/OpenRouter streams use it: a line
ends with ``\\r\\n``, ``\\n`` or ``\\r``; a blank line ends an event; a line starting with ``:`` is
a comment (OpenRouter's ``: OPENROUTER PROCESSING`` keep-alive), never data; the ``data`` lines of
one event are joined with ``\\n``; ``event``, ``id`` and ``retry`` are fields, others are ignored;
one byte-order mark may open the stream. ``data: [DONE]`` is an ordinary event (:data:`DONE`).

Reading is two steps, so each reader pays only for what it needs:

- :class:`EventSplitter` cuts bytes (split anywhere: in a line, in a ``\\r\\n`` pair, in a UTF-8
  character) into whole raw events, each with its terminator. The proxy passes events it does not
  change through as these very bytes.
- :func:`event_data` takes the data out of one raw event (the proxy);
  :meth:`EventSplitter.feed_data` does both steps at once (the load generator); and
  :class:`SSEDecoder` makes typed :class:`SSEEvent` objects with every field (the client).

Unlike the browser's ``EventSource``, a last event the server left without its blank line still
counts (:meth:`EventSplitter.rest`): a server that closes the stream right after a chunk has sent
that chunk. A line cut off by the end of the stream comes out as it is; the reader's JSON parse
decides what it is worth.

This is on the proxy's per-chunk path: the usual read (one ``data:`` line ending in ``\\n\\n``, no
``\\r``) takes two byte searches to split and three to read, no copy. Nothing here imports a web
framework.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from infer_cli.wire.error_document import error_body

DONE_DATA = "[DONE]"
"""The data of OpenAI's end-of-stream event."""

DONE = b"data: [DONE]\n\n"

_BOM = b"\xef\xbb\xbf"

# A blank line: two line ends in a row, where "\r\n" is one line end (never "\r" then "\n").
_BLANK_LINE = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")
_LINE_END = re.compile(r"\r\n|\r|\n")


# --- encoding -------------------------------------------------------------------------------------


def data_event(payload: Mapping[str, Any] | str) -> bytes:
    """One ``data:`` event carrying a JSON object (or a literal string such as ``[DONE]``; one
    ``data:`` line for each of its lines).
    """
    if not isinstance(payload, str):
        return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()
    if "\n" in payload or "\r" in payload:
        return "".join(f"data: {line}\n" for line in _LINE_END.split(payload)).encode() + b"\n"
    return f"data: {payload}\n\n".encode()


def comment(text: str) -> bytes:
    """An SSE comment (one ``:`` line per line of ``text``), which clients never see as data."""
    return b"".join(b": " + line.encode() + b"\n" for line in text.splitlines() or [""]) + b"\n"


def error_event(
    status: int,
    message: str,
    *,
    error_type: str | None = None,
    chunk: Mapping[str, Any] | None = None,
) -> bytes:
    """A failure inside a stream whose status was already sent: a data event whose ``error`` is
    the error document's (:mod:`infer_cli.wire.error_document`), alone or added to the fields of
    ``chunk`` (OpenRouter puts it in a completion chunk).
    """
    event = dict(chunk) if chunk else {}
    event["error"] = error_body(status, message, error_type=error_type)["error"]
    return data_event(event)


# --- decoding: bytes into raw events --------------------------------------------------------------


class EventSplitter:
    """Whole raw SSE events (each with its blank-line terminator) from arbitrarily cut bytes.

    Every byte of the stream but a leading byte-order mark is in exactly one event, so events
    forwarded unchanged are the stream as it came. An event that ends in ``\\r`` at the end of a
    read is given out at once; when the next read opens with the ``\\n`` of that ``\\r\\n``, the
    ``\\n`` stays at the head of the next event, where every reader takes it for the line end it
    is. A reader that needs only the data takes :meth:`feed_data` instead of :meth:`feed`.
    """

    __slots__ = ("_buffer", "_started")

    def __init__(self) -> None:
        self._buffer = b""
        self._started = False  # past a possible byte-order mark

    @property
    def pending(self) -> bool:
        """Bytes of an unfinished event are held (or the stream's start is not past yet)."""
        return bool(self._buffer) or not self._started

    def feed(self, chunk: bytes) -> list[bytes]:
        """The events that ``chunk`` completes (possibly none)."""
        buffer = self._buffer + chunk if self._buffer else chunk
        if not self._started:
            buffer = self._skip_mark(buffer)
        # find(), not `in`: on bytes, `in` first tries its argument as an int and clears the error
        if buffer.find(b"\r") >= 0:
            return self._split_any(buffer)
        end = buffer.find(b"\n\n")  # the usual case, without the regular expression
        if end < 0:
            self._buffer = buffer
            return []
        if end == len(buffer) - 2:  # the most usual: one whole event
            self._buffer = b""
            return [buffer]
        events = buffer.split(b"\n\n")  # one pass for several events
        self._buffer = events.pop()
        return [event + b"\n\n" for event in events]

    def feed_data(self, chunk: bytes) -> list[bytes]:
        """The data of the events that ``chunk`` completes, leaving out those without any: what
        :func:`event_data` gives for each event of :meth:`feed`, for less when a read carries
        several events (the load generator's saturated streams).
        """
        buffer = self._buffer + chunk if self._buffer else chunk
        if not self._started:
            buffer = self._skip_mark(buffer)
        if buffer.find(b"\r") >= 0:
            events = self._split_any(buffer)
            return [data for event in events if (data := event_data(event)) is not None]
        events = buffer.split(b"\n\n")  # each without its terminator
        self._buffer = events.pop()
        found: list[bytes] = []
        for event in events:
            if event.startswith(b"data: ") and event.find(b"\n") < 0:
                found.append(event[6:])  # the usual case: one data line
            elif (data := event_data(event + b"\n\n")) is not None:
                found.append(data)
        return found

    def rest(self) -> list[bytes]:
        """At the end of the stream: the last event if it came without its blank line."""
        rest, self._buffer = self._buffer, b""
        return [rest] if rest.strip() else []

    def _split_any(self, buffer: bytes) -> list[bytes]:
        """Events between blank lines, whatever the line ends; keeps what follows the last."""
        events: list[bytes] = []
        start = 0
        while match := _BLANK_LINE.search(buffer, start):
            events.append(buffer[start : match.end()])
            start = match.end()
        self._buffer = buffer[start:]
        return events

    def _skip_mark(self, buffer: bytes) -> bytes:
        if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
            return buffer  # perhaps a mark cut in two, or nothing yet: wait for more
        self._started = True
        return buffer.removeprefix(_BOM)


# --- decoding: raw events into data and fields ----------------------------------------------------


def event_data(event: bytes) -> bytes | None:
    """The data of one raw event (its ``data`` lines joined with ``\\n``), or None when it has
    none (a comment, a keep-alive, an event of other fields only).
    """
    if (
        event.startswith(b"data: ")
        and event.find(b"\n") == len(event) - 2
        and event.find(b"\r", 6) < 0
    ):
        return event[6:-2]  # the usual case: one data line, "\n\n"
    data = [value for name, value in fields(event) if name == b"data"]
    return b"\n".join(data) if data else None


def fields(event: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The ``(name, value)`` fields of one raw event, in order; a comment's name is empty."""
    for line in event.splitlines():  # bytes split on "\r\n", "\n" and "\r" only
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        yield name, value


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its data, type, the stream's last event id, and its retry field."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None

    @property
    def done(self) -> bool:
        """The OpenAI end-of-stream sentinel, ``data: [DONE]``."""
        return self.data.strip() == DONE_DATA

    def json(self) -> Any:
        """The data parsed as JSON (raises :class:`ValueError` when it is not JSON)."""
        return json.loads(self.data)


class SSEDecoder:
    """Bytes in, typed :class:`SSEEvent` objects out; counts comments (keep-alives) as it goes.

    As the spec says, an event without a ``data`` line is not dispatched, and the last event id
    carries over to the events after it.
    """

    def __init__(self) -> None:
        self._splitter = EventSplitter()
        self._last_id: str | None = None
        self.comments = 0
        self.last_comment: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events ``chunk`` completes (possibly none)."""
        return self._events(self._splitter.feed(chunk))

    def close(self) -> list[SSEEvent]:
        """At the end of the stream: the last event if it came without its blank line."""
        return self._events(self._splitter.rest())

    def _events(self, raw_events: list[bytes]) -> list[SSEEvent]:
        events = []
        for raw in raw_events:
            event = self._parse(raw)
            if event is not None:
                events.append(event)
        return events

    def _parse(self, raw: bytes) -> SSEEvent | None:
        data: list[str] = []
        kind = ""
        retry: int | None = None
        for name, value in fields(raw):
            if name == b"data":
                data.append(value.decode("utf-8", "replace"))
            elif not name:
                self.comments += 1
                self.last_comment = value.decode("utf-8", "replace").strip()
            elif name == b"event":
                kind = value.decode("utf-8", "replace")
            elif name == b"id" and b"\0" not in value:
                self._last_id = value.decode("utf-8", "replace")
            elif name == b"retry" and value.isdigit():
                retry = int(value)
        if not data:
            return None
        return SSEEvent("\n".join(data), kind or "message", self._last_id, retry)


def decode(chunks: Iterable[bytes]) -> Iterator[SSEEvent]:
    """Every event of a whole byte stream (synchronous)."""
    decoder = SSEDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.close()
