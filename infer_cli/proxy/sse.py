"""The proxy's event streams: OpenRouter's pieces and small transformations of a byte stream.

The codec itself (cutting bytes into events, reading and writing ``data:`` events) is
:mod:`infer_cli.wire.sse`, the one the client and the load generator use too; it is re-exported
here so that the proxy reads its streams through one module. What is the proxy's own: OpenRouter's
mid-stream ``error_event`` and keep-alive comment, and the transformations. A stream is an
``AsyncIterator[bytes]``; a transformation takes one and returns another. Keep-alive comments go
either before the first chunk of any byte stream (``with_keepalive``) or in every gap of a stream
of whole events (``send_with_keepalive``, :class:`Paced`). Nothing here imports a web framework.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

from infer_cli.wire import sse as wire
from infer_cli.wire.sse import DONE, EventSplitter, comment, data_event, event_data

__all__ = [
    "DONE",
    "EARLY",
    "KEEPALIVE_COMMENT",
    "ByteStream",
    "EventSplitter",
    "Paced",
    "StreamTransform",
    "comment",
    "compose",
    "data_event",
    "error_event",
    "event_data",
    "send_with_keepalive",
    "with_keepalive",
]

ByteStream = AsyncIterator[bytes]
StreamTransform = Callable[[ByteStream], ByteStream]

KEEPALIVE_COMMENT = comment("OPENROUTER PROCESSING")
"""OpenRouter's keep-alive: an SSE comment, which every client must ignore."""


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
    choice: dict[str, Any] = {"index": 0}
    if text:
        choice["text"] = ""
    else:
        choice["delta"] = {"content": ""}
    choice["finish_reason"] = "error"
    chunk["choices"] = [choice]
    return wire.error_event(status, message, error_type=error_type, chunk=chunk)


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
    """Emit every chunk of ``source`` (whole events), with ``keepalive`` in every gap of
    ``interval`` s (the first after ``first_after`` s, default ``interval``): see :class:`Paced`.
    """
    wait = interval if first_after is None else first_after
    paced = Paced(emit, interval, first_after=wait, keepalive=keepalive)
    try:
        async for chunk in source:
            await paced.send(chunk)
    finally:
        paced.close()


class Paced:
    """Sends whole events through ``emit``, and ``keepalive`` whenever nothing was sent for
    ``interval`` s (the first time after ``first_after`` s): every gap of a stream is covered, not
    only the wait for its first chunk, so what is sent must be whole events (a comment between
    two chunks must not split an event).

    A watchdog task, waking once per interval, sends the comments. A chunk never waits for a lock
    of its own: the watchdog stays away while a chunk is being sent (the stream is not silent
    then), and a chunk waits only for a comment the watchdog is sending at that moment.
    """

    def __init__(
        self,
        emit: Callable[[bytes], Awaitable[None]],
        interval: float,
        *,
        first_after: float,
        keepalive: bytes = KEEPALIVE_COMMENT,
    ) -> None:
        self._emit = emit
        self._keepalive = keepalive
        self._interval = interval
        self._loop = loop = asyncio.get_running_loop()
        self._last = loop.time() - interval + max(0.0, first_after)
        self._sending = False
        """A chunk is being sent (its ``emit`` may wait for the client to read)."""
        self._commenting = asyncio.Lock()
        """Held by the watchdog while it sends a comment."""
        self._watchdog = asyncio.ensure_future(self._watch())
        self._watchdog.add_done_callback(_retrieve)

    async def send(self, chunk: bytes) -> None:
        self._sending = True  # also while it waits for a comment: the stream is not silent
        try:
            if self._commenting.locked():
                async with self._commenting:
                    await self._emit(chunk)
            else:
                await self._emit(chunk)
        finally:
            self._sending = False
        self._last = self._loop.time()

    def close(self) -> None:
        self._watchdog.cancel()

    async def _watch(self) -> None:
        loop, interval = self._loop, self._interval
        while True:
            await asyncio.sleep(max(0.0, self._last + interval - loop.time()))
            if self._sending:
                await asyncio.sleep(interval)  # a chunk on its way; its end starts a new interval
            elif loop.time() >= self._last + interval - EARLY:
                async with self._commenting:
                    await self._emit(self._keepalive)
                self._last = loop.time()


EARLY = 0.002
"""Timers may fire this early; a comment due that soon is sent now."""


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def _aclose(iterator: AsyncIterator[bytes]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
