"""Incremental server-sent events decoder: bytes (cut anywhere) in, whole events out.

Follows the WHATWG event-stream rules that matter to OpenAI/OpenRouter streams: lines end with
``\\n``, ``\\r\\n`` or ``\\r``; a line starting with ``:`` is a comment (OpenRouter's
``: OPENROUTER PROCESSING`` keep-alive) and never becomes data; several ``data:`` lines of one event
are joined with ``\\n``; a blank line dispatches the event. ``data: [DONE]`` is an ordinary event
whose :attr:`SSEEvent.done` is true. A chunk may split a line, a ``\\r\\n`` pair or a multi-byte
UTF-8 character: lines are decoded only once complete.

Usage::

    decoder = SSEDecoder()
    for chunk in byte_chunks:
        for event in decoder.feed(chunk):
            ...
    for event in decoder.close():  # an unterminated last event, if the server left one
        ...
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

DONE_DATA = "[DONE]"


@dataclass(frozen=True, slots=True)
class SSEEvent:
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
    """Feed bytes (or whole lines); get events. Counts comments (keep-alives) as it goes."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip_lf = False  # the previous chunk ended in "\r": a leading "\n" belongs to it
        self._started = False
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self._has_fields = False
        self.comments = 0
        self.last_comment: str | None = None

    # --- input ------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Events completed by ``chunk`` (possibly none)."""
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        self._buffer += chunk
        events: list[SSEEvent] = []
        for line in self._take_lines():
            event = self.feed_line(line)
            if event is not None:
                events.append(event)
        return events

    def feed_line(self, line: str) -> SSEEvent | None:
        """One line without its terminator; returns the event a blank line dispatches."""
        if not self._started:
            self._started = True
            line = line.removeprefix("\ufeff")
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            self.last_comment = line[1:].strip()
            return None
        name, sep, value = line.partition(":")
        if sep:
            value = value.removeprefix(" ")
        self._field(name, value)
        return None

    def close(self) -> list[SSEEvent]:
        """Flush at end of stream: a last line and event left without terminators still count."""
        events: list[SSEEvent] = []
        if self._buffer:
            rest = self._buffer.decode("utf-8", errors="replace")
            self._buffer.clear()
            event = self.feed_line(rest)
            if event is not None:
                events.append(event)
        event = self._dispatch()
        if event is not None:
            events.append(event)
        return events

    # --- internals ----------------------------------------------------------------------------

    def _take_lines(self) -> Iterator[str]:
        buffer = self._buffer
        start = 0
        length = len(buffer)
        while start < length:
            lf = buffer.find(b"\n", start)
            cr = buffer.find(b"\r", start)
            if lf < 0 and cr < 0:
                break
            if cr < 0 or (0 <= lf < cr):
                end, next_start = lf, lf + 1
            elif cr == length - 1:
                # "\r" last in the buffer: the line ends, and a "\n" may open the next chunk
                end, next_start = cr, cr + 1
                self._skip_lf = True
            elif buffer[cr + 1] == 0x0A:
                end, next_start = cr, cr + 2
            else:
                end, next_start = cr, cr + 1
            yield buffer[start:end].decode("utf-8", errors="replace")
            start = next_start
        del buffer[:start]

    def _field(self, name: str, value: str) -> None:
        if name == "data":
            self._data.append(value)
            self._has_fields = True
        elif name == "event":
            self._event = value
            self._has_fields = True
        elif name == "id" and "\0" not in value:
            self._last_id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        # unknown fields are ignored, as the spec says

    def _dispatch(self) -> SSEEvent | None:
        if not self._has_fields:
            self._reset()
            return None
        event = SSEEvent(
            data="\n".join(self._data),
            event=self._event or "message",
            id=self._last_id,
            retry=self._retry,
        )
        self._reset()
        return event

    def _reset(self) -> None:
        self._data = []
        self._event = ""
        self._retry = None
        self._has_fields = False


def decode(chunks: Iterable[bytes]) -> Iterator[SSEEvent]:
    """Every event of a whole byte stream (synchronous)."""
    decoder = SSEDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.close()
