"""Server-sent events: the codec pieces and small transformations of a byte stream.

A stream is an ``AsyncIterator[bytes]``; a transformation takes one and returns another. Here:
building events (``data_event``, OpenRouter's mid-stream ``error_event``), cutting bytes into whole
events (``EventSplitter``, ``event_data``), and keep-alive comments, either before the first chunk
of any byte stream (``with_keepalive``) or in every gap of a stream of whole events
(``send_with_keepalive``). Nothing here imports a web framework.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from infer_cli.proxy.errors import error_body

ByteStream = AsyncIterator[bytes]
StreamTransform = Callable[[ByteStream], ByteStream]

KEEPALIVE_COMMENT = b": OPENROUTER PROCESSING\n\n"
"""OpenRouter's keep-alive: an SSE comment, which every client must ignore."""

DONE = b"data: [DONE]\n\n"


def comment(text: str) -> bytes:
    """One SSE comment line (never seen by clients as data)."""
    return b"".join(b": " + line.encode() + b"\n" for line in text.splitlines() or [""]) + b"\n"


def data_event(payload: Mapping[str, Any] | str) -> bytes:
    """One ``data:`` event carrying a JSON object (or a literal string such as ``[DONE]``)."""
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def error_event(
    status: int,
    message: str,
    *,
    model: str,
    error_type: str | None = None,
    completion_id: str | None = None,
    created: int | None = None,
    provider: str | None = None,
    text: bool = False,
) -> bytes:
    """OpenRouter's mid-stream error chunk: the status stays 200; it is the stream's last event
    (before ``data: [DONE]``). ``text`` shapes it as a text completion chunk (``/completions``).
    """
    prefix = "cmpl" if text else "chatcmpl"
    chunk: dict[str, Any] = {
        "id": completion_id or f"{prefix}-{uuid.uuid4().hex}",
        "object": "text_completion" if text else "chat.completion.chunk",
        "created": int(time.time()) if created is None else created,
        "model": model,
    }
    if provider is not None:
        chunk["provider"] = provider
    chunk["error"] = error_body(status, message, error_type=error_type)["error"]
    choice: dict[str, Any] = {"index": 0}
    if text:
        choice["text"] = ""
    else:
        choice["delta"] = {"content": ""}
    choice["finish_reason"] = "error"
    chunk["choices"] = [choice]
    return data_event(chunk)


_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


class EventSplitter:
    """Whole SSE events (each with its blank-line terminator) from arbitrarily cut bytes."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """The events that ``chunk`` completes."""
        buffer = self._buffer + chunk if self._buffer else chunk
        events: list[bytes] = []
        start = 0
        if b"\r" in buffer:
            while match := _EVENT_END.search(buffer, start):
                events.append(buffer[start : match.end()])
                start = match.end()
        else:  # the usual case, and the same split without the regular expression
            while (end := buffer.find(b"\n\n", start)) >= 0:
                events.append(buffer[start : end + 2])
                start = end + 2
        self._buffer = buffer[start:]
        return events

    def rest(self) -> list[bytes]:
        """A trailing piece without a terminator, once the source ended."""
        rest, self._buffer = self._buffer, b""
        return [rest] if rest.strip() else []


def event_data(event: bytes) -> bytes | None:
    """The ``data`` of one event (its ``data:`` lines joined), or None for a comment-only event."""
    if event.startswith(b"data: ") and event.find(b"\n") == len(event) - 2:
        return event[6:-2]  # the usual case: one data line
    lines = [line for line in event.splitlines() if line.startswith(b"data:")]
    if not lines:
        return None
    return b"\n".join(line[6:] if line.startswith(b"data: ") else line[5:] for line in lines)


def compose(source: ByteStream, *transforms: StreamTransform) -> ByteStream:
    """Apply transformations in order: ``compose(s, a, b)`` is ``b(a(s))``."""
    for transform in transforms:
        source = transform(source)
    return source


async def with_keepalive(
    source: AsyncIterable[bytes],
    interval: float,
    *,
    first_after: float | None = None,
    keepalive: bytes = KEEPALIVE_COMMENT,
) -> AsyncIterator[bytes]:
    """Yield ``keepalive`` every ``interval`` s until ``source`` yields; then pass it through.

    The first comment comes after ``first_after`` seconds (default ``interval``): a caller that
    already waited part of an interval passes what is left. Only the wait for the first byte is
    covered: before it, a comment cannot split an event in two; after it, the engine streams tokens
    as they exist. Closing this iterator cancels a pending first read of ``source``.
    """
    iterator = aiter(source)
    first: asyncio.Future[bytes] = asyncio.ensure_future(anext(iterator))
    first.add_done_callback(_retrieve)
    wait = interval if first_after is None else max(0.0, first_after)
    try:
        while True:
            done, _ = await asyncio.wait({first}, timeout=wait)
            if done:
                break
            yield keepalive
            wait = interval
        try:
            chunk = first.result()
        except StopAsyncIteration:
            return
        yield chunk
        async for chunk in iterator:
            yield chunk
    finally:
        if not first.done():
            # The source is suspended in its first read, in another task: cancelling that read
            # unwinds (and so closes) the source there. Awaiting it here could itself be cancelled;
            # the done callback retrieves its outcome instead.
            first.cancel()
        else:
            await _aclose(iterator)


async def send_with_keepalive(
    source: AsyncIterable[bytes],
    emit: Callable[[bytes], Awaitable[None]],
    interval: float,
    *,
    first_after: float | None = None,
    keepalive: bytes = KEEPALIVE_COMMENT,
) -> None:
    """Emit every chunk of ``source``, and ``keepalive`` whenever nothing was emitted for
    ``interval`` s (the first time after ``first_after`` s, default ``interval``).

    Unlike :func:`with_keepalive` this covers every gap, not only the wait for the first chunk, so
    ``source`` must yield whole events (a comment between two chunks must not split an event).
    Chunks pass straight through; a watchdog task, waking once per interval, sends the comments,
    and a lock keeps its sends from interleaving with the source's.
    """
    loop = asyncio.get_running_loop()
    lock = asyncio.Lock()
    last = loop.time() - interval + (interval if first_after is None else max(0.0, first_after))

    async def watch() -> None:
        nonlocal last
        while True:
            await asyncio.sleep(max(0.0, last + interval - loop.time()))
            if loop.time() >= last + interval - _EARLY:
                async with lock:
                    await emit(keepalive)
                last = loop.time()

    watchdog = asyncio.ensure_future(watch())
    watchdog.add_done_callback(_retrieve)
    try:
        async for chunk in source:
            async with lock:
                await emit(chunk)
            last = loop.time()
    finally:
        watchdog.cancel()


_EARLY = 0.002
"""Timers may fire this early; a comment due that soon is sent now."""


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def _aclose(iterator: AsyncIterator[bytes]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
