"""The OpenRouter provider contract on streamed completions: chunks, the one usage chunk, keep-alive
comments, mid-stream errors, client disconnects, and what each generation records. Real sockets,
the ``openai`` SDK as a client where it can be.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio

from infer_cli.proxy import sse
from infer_cli.proxy.openrouter.exchange import Exchange
from infer_cli.proxy.upstream.client import UpstreamStreamError
from tests.fake_upstream import FakeUpstream
from tests.proxy_harness import (
    CHAT,
    MODEL,
    PRICES,
    STREAM,
    Running,
    events_of,
    reset,
    shared_proxy,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

KEEPALIVE = 0.2
TIMEOUT = 1.0


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["splice", "loop"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[FakeUpstream, Running]]:
    """Every test twice: streamed completions spliced from callbacks (infer's own server), and
    through the relay's loop (a server without a chunk writer)."""
    async with shared_proxy(
        keepalive_interval=KEEPALIVE,
        request_timeout=TIMEOUT,
        chunk_writer=request.param == "splice",
    ) as both:
        yield both


@pytest.fixture
def fake(pair: tuple[FakeUpstream, Running]) -> FakeUpstream:
    reset(*pair)
    return pair[0]


@pytest.fixture
def proxy(pair: tuple[FakeUpstream, Running], fake: FakeUpstream) -> Running:
    return pair[1]


async def read_raw(
    proxy: Running, body: dict[str, Any], path: str = "/v1/chat/completions"
) -> bytes:
    async with proxy.http() as http, http.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return b"".join([chunk async for chunk in response.aiter_raw()])


def chunks_of(raw: bytes) -> list[dict[str, Any]]:
    events = events_of(raw)
    assert events[-1] == b"[DONE]"
    assert events.count(b"[DONE]") == 1
    return [json.loads(event) for event in events[:-1]]


async def wait_for(event: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


async def wait_for_records(proxy: Running, count: int = 1) -> None:
    for _ in range(200):
        if len(proxy.records) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {count} records, got {proxy.records}")


# --- chunks and the usage chunk ------------------------------------------------------------------


async def test_sdk_stream_ends_with_one_usage_chunk_the_client_did_not_ask_for(
    fake: FakeUpstream, proxy: Running
) -> None:
    fake.prompt_tokens, fake.chunks = 30, 4
    stream = await proxy.sdk("/api/v1").chat.completions.create(
        model=MODEL, messages=CHAT["messages"], stream=True
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "Hello, world!"
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    finished = [
        chunk.choices[0] for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason
    ]
    assert [choice.finish_reason for choice in finished] == ["stop"]
    assert finished[0].model_extra == {"native_finish_reason": "stop"}
    with_usage = [chunk for chunk in chunks if chunk.usage is not None]
    assert with_usage == [chunks[-1]] and chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (30, 4, 34)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    extra = usage.model_extra or {}
    cost = 30 * PRICES.prompt + 4 * PRICES.completion + PRICES.request
    assert Decimal(str(extra["cost"])) == cost
    assert Decimal(str(extra["cost_details"]["upstream_inference_cost"])) == cost
    sent = json.loads(fake.requests[-1]["body"])
    assert sent["stream_options"] == {"include_usage": True}  # asked upstream for the client


async def test_usage_comes_once_when_the_client_asks_for_it_too(
    fake: FakeUpstream, proxy: Running
) -> None:
    fake.prompt_tokens, fake.cached_tokens, fake.chunks = 100, 40, 3
    options = {"include_usage": True, "continuous_usage_stats": True}
    chunks = chunks_of(await read_raw(proxy, {**STREAM, "stream_options": options}))
    assert [chunk for chunk in chunks if "usage" in chunk] == [chunks[-1]]
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == []
    assert usage["prompt_tokens_details"]["cached_tokens"] == 40
    cost = 60 * PRICES.prompt + 40 * PRICES.input_cache_read + 3 * PRICES.completion
    assert Decimal(str(usage["cost"])) == cost + PRICES.request
    assert Decimal(str(usage["cost_details"]["upstream_inference_prompt_cost"])) == (
        60 * PRICES.prompt + 40 * PRICES.input_cache_read
    )
    sent = json.loads(fake.requests[-1]["body"])
    assert sent["stream_options"] == {"include_usage": True}


async def test_usage_is_counted_when_the_engine_sends_none(
    fake: FakeUpstream, proxy: Running
) -> None:
    fake.usage_in_stream, fake.chunks = False, 4
    chunks = chunks_of(await read_raw(proxy, STREAM))
    usage = chunks[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (0, 4)
    await wait_for_records(proxy)
    assert proxy.records[0].completion_tokens == 4


async def test_finish_reason_in_a_stream_is_normalized(fake: FakeUpstream, proxy: Running) -> None:
    fake.finish_reason = "abort"
    chunks = chunks_of(await read_raw(proxy, STREAM))
    [finished] = [
        c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]
    ]
    assert (finished["finish_reason"], finished["native_finish_reason"]) == ("error", "abort")


async def test_text_completion_stream_through_the_sdk(fake: FakeUpstream, proxy: Running) -> None:
    fake.chunks = 3
    stream = await proxy.sdk().completions.create(model=MODEL, prompt="Say hi", stream=True)
    chunks = [chunk async for chunk in stream]
    assert "".join(chunk.choices[0].text for chunk in chunks if chunk.choices) == "Hello, world"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert fake.requests[-1]["path"] == "/v1/completions"


# --- keep-alive comments -------------------------------------------------------------------------


async def test_keepalive_comments_before_the_first_token_and_in_long_gaps(
    fake: FakeUpstream, proxy: Running
) -> None:
    fake.first_token_delay, fake.gap_after, fake.gap, fake.chunks = 0.5, 2, 0.6, 4
    raw = await read_raw(proxy, STREAM)
    blocks = [block for block in raw.split(b"\n\n") if block]
    # Every block is a whole event or a whole comment: comments never split an event.
    assert all(block.startswith((b"data: ", b": OPENROUTER PROCESSING")) for block in blocks)
    kinds = ["comment" if block.startswith(b":") else "data" for block in blocks]
    first_data = kinds.index("data")
    assert first_data >= 2  # before the first token
    after = kinds[first_data:]
    gap_comments = [i for i, kind in enumerate(after) if kind == "comment"]
    assert len(gap_comments) >= 2  # in the gap after two tokens
    assert after[gap_comments[0] - 1] == "data" and after[gap_comments[-1] + 1] == "data"
    assert chunks_of(raw)[-1]["usage"]["completion_tokens"] == 4


async def test_sdk_ignores_keepalive_comments(fake: FakeUpstream, proxy: Running) -> None:
    fake.first_token_delay, fake.gap_after, fake.gap, fake.chunks = 0.3, 1, 0.3, 3
    stream = await proxy.sdk().chat.completions.create(
        model=MODEL, messages=CHAT["messages"], stream=True
    )
    text = "".join(
        [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    )
    assert text == "Hello, world"


# --- errors after streaming began ----------------------------------------------------------------


def error_chunk(raw: bytes) -> dict[str, Any]:
    chunks = chunks_of(raw)  # ends with exactly one [DONE]
    last = chunks[-1]
    assert last["object"] == "chat.completion.chunk"
    assert last["choices"] == [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]
    assert isinstance(last["created"], int) and last["model"] == MODEL
    assert all("error" not in chunk for chunk in chunks[:-1])
    return last


async def test_engine_error_event_becomes_openrouters_error_chunk(
    fake: FakeUpstream, proxy: Running
) -> None:
    fake.error_after, fake.chunks = 2, 4
    last = error_chunk(await read_raw(proxy, STREAM))
    assert last["error"]["code"] == 502  # the engine's 500: the model failed
    assert last["error"]["message"] == "fake engine error"
    assert last["id"].startswith("chatcmpl-fake")  # the stream's own id
    await wait_for_records(proxy)
    [record] = proxy.records
    assert record.id == last["id"]
    assert (record.status, record.finish_reason, record.error) == (
        200,
        "error",
        "fake engine error",
    )
    assert record.completion_tokens == 2 and not record.cancelled


async def test_sdk_raises_on_the_error_chunk(fake: FakeUpstream, proxy: Running) -> None:
    fake.error_after, fake.chunks = 1, 4
    stream = await proxy.sdk().chat.completions.create(
        model=MODEL, messages=CHAT["messages"], stream=True
    )
    seen: list[str] = []
    with pytest.raises(openai.APIError, match="fake engine error"):
        async for chunk in stream:
            seen.extend(chunk.choices[0].delta.content or "" for _ in chunk.choices[:1])
    assert "".join(seen) == "Hello"


async def test_engine_dropping_the_connection_mid_stream(
    fake: FakeUpstream, proxy: Running
) -> None:
    fake.break_after, fake.chunks = 2, 4
    last = error_chunk(await read_raw(proxy, STREAM))
    assert last["error"]["code"] == 502
    assert last["error"]["metadata"]["error_type"] == "provider_unavailable"


async def test_engine_going_silent_mid_stream_is_a_timeout_chunk(
    fake: FakeUpstream, proxy: Running
) -> None:
    fake.gap_after, fake.gap, fake.chunks = 1, TIMEOUT + 0.5, 3
    raw = await read_raw(proxy, STREAM)
    last = error_chunk(raw)
    assert last["error"]["code"] == 408
    assert last["error"]["metadata"]["error_type"] == "timeout"
    assert raw.count(sse.KEEPALIVE_COMMENT) >= 3  # the silence was covered meanwhile


async def test_engine_error_status_before_the_stream_is_an_http_error(
    fake: FakeUpstream, proxy: Running
) -> None:
    fake.fail_status = 400
    async with proxy.http() as http:
        response = await http.post("/v1/chat/completions", json=STREAM)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 400
    await wait_for_records(proxy)
    assert proxy.records[0].status == 400 and proxy.records[0].streamed


# --- the client goes away ------------------------------------------------------------------------


async def test_client_disconnect_mid_stream_cancels_the_upstream_at_once(
    fake: FakeUpstream, proxy: Running
) -> None:
    fake.chunk_delay, fake.chunks = 0.1, 100
    async with proxy.http(timeout=10) as http:
        async with http.stream("POST", "/v1/chat/completions", json=STREAM) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:") and '"Hello"' in line:
                    break
        left = time.monotonic()
    assert await wait_for(fake.cancelled, 3.0)
    assert fake.cancelled_at is not None and fake.cancelled_at - left < 1.0
    assert not fake.finished.is_set()
    await wait_for_records(proxy)
    [record] = proxy.records
    assert record.cancelled and record.status == 200 and record.streamed
    assert record.completion_tokens >= 1 and record.finish_reason is None


async def test_client_disconnect_before_the_first_token(fake: FakeUpstream, proxy: Running) -> None:
    fake.header_delay = 5.0
    async with (
        proxy.http(timeout=10) as http,
        http.stream("POST", "/v1/chat/completions", json=STREAM) as response,
    ):
        async for chunk in response.aiter_raw():
            assert chunk.startswith(b":")  # a keep-alive while the engine is silent
            break
    assert await wait_for(fake.cancelled, 3.0)
    await wait_for_records(proxy)
    assert proxy.records[0].cancelled


async def test_client_disconnect_on_a_plain_request_is_499(
    fake: FakeUpstream, proxy: Running
) -> None:
    fake.header_delay = 5.0
    async with proxy.http(timeout=0.3) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post("/v1/chat/completions", json=CHAT)
    assert await wait_for(fake.cancelled, 3.0)
    await wait_for_records(proxy)
    assert proxy.records[0].cancelled and proxy.records[0].status == 499


# --- what a streamed generation records ----------------------------------------------------------


async def test_stream_records_ttft_and_inter_token_gaps(fake: FakeUpstream, proxy: Running) -> None:
    fake.first_token_delay, fake.chunk_delay, fake.chunks = 0.1, 0.05, 4
    raw = await read_raw(proxy, STREAM, "/api/v1/chat/completions")
    completion_id = chunks_of(raw)[0]["id"]
    await wait_for_records(proxy)
    [record] = proxy.records
    assert record.id == completion_id and record.streamed and not record.cancelled
    assert record.route == "/api/v1/chat/completions"
    assert record.ttft is not None and 0.1 <= record.ttft < record.latency
    assert len(record.itl) == 3 and all(gap >= 0.03 for gap in record.itl)
    assert (record.prompt_tokens, record.completion_tokens) == (5, 4)
    assert record.cost == 5 * PRICES.prompt + 4 * PRICES.completion + PRICES.request
    async with proxy.http() as http:
        stats = (await http.get("/api/v1/generation", params={"id": completion_id})).json()
    data = stats["data"]
    assert data["streamed"] is True and data["cancelled"] is False
    assert data["time_to_first_token"] >= 100
    assert data["latency"] >= data["time_to_first_token"]


# --- the pure parts ------------------------------------------------------------------------------


async def slow(*steps: tuple[float, bytes]) -> AsyncIterator[bytes]:
    for delay, chunk in steps:
        await asyncio.sleep(delay)
        yield chunk


async def test_send_with_keepalive_fills_every_gap() -> None:
    out: list[bytes] = []

    async def emit(chunk: bytes) -> None:
        out.append(chunk)

    source = slow((0.15, b"a"), (0.25, b"b"), (0.0, b"c"))
    await sse.send_with_keepalive(source, emit, 0.1, first_after=0.05)
    first = out.index(b"a")
    assert first >= 1 and set(out[:first]) == {sse.KEEPALIVE_COMMENT}  # before the first
    gap = out[first + 1 : out.index(b"b")]
    assert len(gap) >= 1 and set(gap) == {sse.KEEPALIVE_COMMENT}  # and between chunks
    assert out[-2:] == [b"b", b"c"]
    out.clear()
    await sse.send_with_keepalive(slow((0, b"a"), (0, b"b")), emit, 0.1)
    assert out == [b"a", b"b"]  # nothing added to a prompt source


async def test_send_with_keepalive_sends_the_comment_it_is_given_and_none_mid_chunk() -> None:
    out: list[bytes] = []

    async def emit(chunk: bytes) -> None:
        out.append(b"start " + chunk)
        if chunk == b"slow":
            await asyncio.sleep(0.3)  # a client that reads slowly: three intervals
        out.append(b"end " + chunk)

    await sse.send_with_keepalive(
        slow((0.15, b"a"), (0.0, b"slow")), emit, 0.1, first_after=0.05, keepalive=b": x\n\n"
    )
    first = out.index(b"start a")
    assert first >= 2 and set(out[:first]) == {b"start : x\n\n", b"end : x\n\n"}
    assert out[first:] == [b"start a", b"end a", b"start slow", b"end slow"]


async def test_send_with_keepalive_passes_a_source_error_through() -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"a"
        raise UpstreamStreamError(502, "gone")

    async def emit(chunk: bytes) -> None:
        pass

    with pytest.raises(UpstreamStreamError):
        await sse.send_with_keepalive(failing(), emit, 0.1)


async def test_exchange_rewrites_a_stream_and_records_it() -> None:
    records: list[Any] = []
    exchange = Exchange(
        model=MODEL,
        route="/v1/chat/completions",
        streamed=True,
        text=False,
        prices=PRICES,
        observers=[records.append, lambda record: 1 / 0],  # a failing observer is contained
    )

    def event(body: dict[str, Any]) -> bytes:
        return f"data: {json.dumps(body)}\n\n".encode()

    upstream = [
        event(
            {
                "id": "chatcmpl-1",
                "created": 5,
                "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}],
            }
        ),
        event(
            {
                "id": "chatcmpl-1",
                "created": 5,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
            }
        ),
        event(
            {
                "id": "chatcmpl-1",
                "created": 5,
                "choices": [],
                "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8},
            }
        ),
        b"data: [DONE]\n\n",
    ]
    out = b"".join([chunk async for chunk in exchange.stream(slow(*[(0.0, c) for c in upstream]))])
    chunks = chunks_of(out)
    assert chunks[1]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 0}
    exchange.finish(cancelled=False)
    exchange.finish(cancelled=False)  # once only
    [record] = records
    assert (record.id, record.prompt_tokens, record.finish_reason) == ("chatcmpl-1", 7, "length")
