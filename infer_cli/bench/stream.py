"""One HTTP answer into a :class:`RequestRecord`: the streamed events, chunk times, usage, errors.

Per chunk the work is one ``perf_counter``, the split into events of :mod:`infer_cli.wire.sse` and
one ``json.loads`` per event: no other allocation, no callback. An event the server left without
its blank line at the end is not read (a stream that ends so is cut, and has no finish reason).
The count of text chunks seen, which the runner's progress samples while requests are in flight, is
one increment on a :class:`ChunkCounter`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from infer_cli.bench.http import Response
from infer_cli.bench.records import RequestRecord
from infer_cli.wire.sse import EventSplitter


class ChunkCounter:
    """Text chunks seen so far, across every request of a run (read by the progress ticker)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


async def read_stream(
    record: RequestRecord,
    response: Response,
    started: float,
    *,
    chat: bool,
    collect: list[str] | None,
    counter: ChunkCounter,
) -> None:
    """Read the server-sent events of ``response`` into ``record``.

    Chunk times are seconds since ``started`` (a ``perf_counter`` reading); ``chat`` reads
    ``choices[0].delta`` (else ``choices[0].text``); the text goes to ``collect`` when given.
    """
    clock = time.perf_counter
    loads = json.loads
    chunks = record.chunks
    splitter = EventSplitter()
    usage: Any = None
    async for data in response.iter_body():
        now = clock() - started
        for payload in splitter.feed_data(data):
            if payload.strip() == b"[DONE]":
                continue
            try:
                event = loads(payload)
            except ValueError:
                record.error = "protocol"
                record.error_message = f"a stream event is not JSON: {payload[:80]!r}"
                return
            if not isinstance(event, dict):
                continue
            choices = event.get("choices")
            if choices:
                choice = choices[0]
                if chat:
                    delta = choice.get("delta") or {}
                    text = (
                        delta.get("content")
                        or delta.get("reasoning_content")
                        or delta.get("reasoning")
                    )
                else:
                    text = choice.get("text")
                if text:
                    chunks.append(now)
                    counter.count += 1
                    if collect is not None:
                        collect.append(text)
                reason = choice.get("finish_reason")
                if reason:
                    record.finish_reason = reason
            if event.get("usage"):
                usage = event["usage"]
            if event.get("error"):
                record.error = "stream_error"
                record.error_message = error_message(json.dumps(event).encode(), None)
    record.end = clock() - started
    if isinstance(usage, dict):
        record.usage = isinstance(usage.get("completion_tokens"), int)
        record.output_tokens = usage.get("completion_tokens")
        record.prompt_tokens = usage.get("prompt_tokens")
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
            record.cached_tokens = details["cached_tokens"]
    if record.output_tokens is None:
        record.output_tokens = len(chunks)
    if record.error is None and not chunks:
        record.error = "no_tokens"
        record.error_message = "the answer ended without any generated text"


def error_message(raw: bytes, status: int | None) -> str:
    """The message of an OpenAI/OpenRouter error body, else the start of the body."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return " ".join(str(error["message"]).split())[:300]
        if isinstance(error, str):
            return error[:300]
        if isinstance(body.get("detail"), str):
            return str(body["detail"])[:300]
    text = raw.decode("utf-8", "replace").strip()
    return text[:300] or (f"HTTP {status}" if status else "error")


__all__ = ["ChunkCounter", "error_message", "read_stream"]
