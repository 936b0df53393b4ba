"""Server-sent events: small, composable transformations of a byte stream.

A stream is an ``AsyncIterator[bytes]``; a transformation takes one and returns another, so features
stack (``with_keepalive`` now; usage and cost rewriting, mid-stream error chunks later) without
touching the relay. Nothing here imports a web framework.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
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
) -> bytes:
    """OpenRouter's mid-stream error chunk: the status stays 200; it is the stream's last event."""
    chunk: dict[str, Any] = {
        "id": completion_id or f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()) if created is None else created,
        "model": model,
    }
    if provider is not None:
        chunk["provider"] = provider
    chunk["error"] = error_body(status, message, error_type=error_type)["error"]
    chunk["choices"] = [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]
    return data_event(chunk)


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


def _retrieve(future: asyncio.Future[bytes]) -> None:
    if not future.cancelled():
        future.exception()


async def _aclose(iterator: AsyncIterator[bytes]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
