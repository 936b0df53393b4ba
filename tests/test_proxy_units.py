"""The proxy's pure parts: SSE transformations, the error shape, header filtering (the SSE codec
itself: tests/test_wire_sse.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx

from infer_cli.proxy import sse
from infer_cli.proxy.errors import ProxyError, error_body
from infer_cli.proxy.upstream.client import request_headers, response_headers


async def slow_source(
    delay: float, *items: bytes, closed: list[str] | None = None
) -> AsyncIterator[bytes]:
    try:
        await asyncio.sleep(delay)
        for item in items:
            yield item
    finally:
        if closed is not None:
            closed.append("closed")


async def collect(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in stream]


async def test_keepalive_comments_until_the_first_chunk_only() -> None:
    source = slow_source(0.35, b"data: 1\n\n", b"data: 2\n\n")
    out = await collect(sse.with_keepalive(source, 0.1))
    comments = out[:-2]
    assert len(comments) >= 2
    assert set(comments) == {sse.KEEPALIVE_COMMENT}
    assert out[-2:] == [b"data: 1\n\n", b"data: 2\n\n"]


async def test_keepalive_first_comment_after_what_is_left_of_an_interval() -> None:
    source = slow_source(0.3, b"data: 1\n\n")
    out = await collect(sse.with_keepalive(source, 10.0, first_after=0.1))
    assert out == [sse.KEEPALIVE_COMMENT, b"data: 1\n\n"]


async def test_keepalive_adds_nothing_to_a_prompt_source() -> None:
    assert await collect(sse.with_keepalive(slow_source(0, b"a", b"b"), 0.5)) == [b"a", b"b"]
    assert await collect(sse.with_keepalive(slow_source(0), 0.5)) == []


async def test_closing_the_keepalive_stream_cancels_a_pending_first_read() -> None:
    closed: list[str] = []
    stream = sse.with_keepalive(slow_source(30, b"never", closed=closed), 0.05)
    assert await anext(stream) == sse.KEEPALIVE_COMMENT
    await stream.aclose()  # type: ignore[attr-defined]
    for _ in range(20):
        if closed:
            break
        await asyncio.sleep(0.01)
    assert closed == ["closed"]


async def test_compose_applies_transforms_in_order() -> None:
    def tag(label: bytes) -> sse.StreamTransform:
        async def transform(source: sse.ByteStream) -> sse.ByteStream:
            async for chunk in source:
                yield chunk + label

        return transform

    out = await collect(sse.compose(slow_source(0, b"x"), tag(b"1"), tag(b"2")))
    assert out == [b"x12"]


def test_error_event_is_openrouters_mid_stream_chunk() -> None:
    raw = sse.error_event(502, "engine died", model="m", completion_id="chatcmpl-1", created=7)
    assert raw.startswith(b"data: ") and raw.endswith(b"\n\n")
    chunk = json.loads(raw[6:])
    assert chunk["id"] == "chatcmpl-1"
    assert chunk["object"] == "chat.completion.chunk"
    assert chunk["created"] == 7
    assert chunk["model"] == "m"
    assert chunk["error"]["code"] == 502
    assert chunk["error"]["message"] == "engine died"
    assert chunk["error"]["metadata"]["error_type"] == "provider_unavailable"
    assert chunk["choices"] == [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]


def test_keepalive_is_openrouters_comment() -> None:
    assert sse.KEEPALIVE_COMMENT == b": OPENROUTER PROCESSING\n\n"


def test_error_body_shape() -> None:
    body = error_body(413, "too big", metadata={"max_body_bytes": 5})
    assert body == {
        "error": {
            "message": "too big",
            "type": "invalid_request_error",
            "code": 413,
            "metadata": {"error_type": "payload_too_large", "max_body_bytes": 5},
        }
    }
    assert error_body(503, "x")["error"]["type"] == "server_error"
    assert error_body(504, "x")["error"]["metadata"]["error_type"] == "timeout"
    error = ProxyError(503, "starting", headers={"Retry-After": "10"})
    response = error.response()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "10"
    assert json.loads(bytes(response.body)) == error.body()


def test_request_headers_drop_hop_by_hop_host_and_the_clients_key() -> None:
    raw = [
        (b"Host", b"proxy:8080"),
        (b"Authorization", b"Bearer client"),
        (b"Connection", b"keep-alive, X-Custom-Hop"),
        (b"X-Custom-Hop", b"1"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Content-Length", b"12"),
        (b"Accept-Encoding", b"gzip, br"),
        (b"Content-Type", b"application/json"),
        (b"X-Title", b"app"),
    ]
    assert request_headers(raw, "internal") == [
        ("content-type", "application/json"),
        ("accept-encoding", "identity"),
        ("authorization", "Bearer internal"),
    ]
    assert ("authorization", "Bearer internal") not in request_headers(raw, None)


def test_response_headers_keep_content_type_and_drop_framing() -> None:
    headers = httpx.Headers(
        [
            ("content-type", "text/event-stream"),
            ("content-length", "10"),
            ("transfer-encoding", "chunked"),
            ("date", "today"),
            ("server", "uvicorn"),
            ("x-request-id", "r1"),
        ]
    )
    assert response_headers(headers) == [
        (b"content-type", b"text/event-stream"),
        (b"x-request-id", b"r1"),
    ]
