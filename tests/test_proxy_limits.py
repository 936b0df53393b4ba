"""Rate limits: the sliding window and the limiter with an injected clock, the middleware on every
way a request can end, and the proxy under concurrent load over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from infer_cli.proxy.guards.limits import (
    GLOBAL_CONCURRENCY,
    KEY_CONCURRENCY,
    REQUESTS_PER_MINUTE,
    TOKENS_PER_MINUTE,
    Limits,
    LimitsMiddleware,
    RateLimiter,
    SlidingWindow,
)
from infer_cli.proxy.guards.middleware import GuardConfig
from infer_cli.proxy.openrouter.generations import GenerationRecord
from tests.fake_upstream import FakeUpstream
from tests.guard_harness import (
    CHAT,
    STREAM,
    add_generate_route,
    assert_error,
    client,
    raw_post,
    record_kwargs,
    serve,
)
from tests.helpers import free_port, wait_until


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- the sliding window -----------------------------------------------------------------------


def test_window_counts_the_last_minute_in_one_second_slots() -> None:
    window = SlidingWindow(window=60, slot=1)
    window.add(1000.2)
    window.add(1000.9, 2)
    assert window.total(1000.9) == 3
    window.add(1010.5, 4)
    assert window.total(1010.5) == 7
    assert window.total(1060.9) == 7  # slot [1000, 1001) counts until 1061
    assert window.total(1061.0) == 4
    assert window.total(1071.0) == 0


def test_window_says_when_the_total_falls_to_an_allowance() -> None:
    window = SlidingWindow(window=60, slot=1)
    window.add(1000.5, 3)
    window.add(1020.5, 2)
    now = 1030.0
    assert window.wait_until_at_most(now, 5) == 0
    assert window.wait_until_at_most(now, 4) == pytest.approx(31.0)  # 1061 - 1030
    assert window.wait_until_at_most(now, 2) == pytest.approx(31.0)
    assert window.wait_until_at_most(now, 1) == pytest.approx(51.0)  # 1081 - 1030
    assert window.wait_until_at_most(now, 0) == pytest.approx(51.0)


def test_window_memory_is_bounded_by_its_slots() -> None:
    window = SlidingWindow(window=60, slot=1)
    for step in range(100_000):
        window.add(1000 + step * 0.01)  # 1000 s of traffic
    assert len(window._slots) <= 62
    assert window.total(1999.5) == 6100  # slots [1939, 1940) to [1999, 2000), of 100 each
    assert window.total(2000.0) == 6000  # [1939, 1940) counted until 2000


# --- the limiter ------------------------------------------------------------------------------


def test_requests_per_minute_are_exact_and_say_when_to_retry() -> None:
    clock = Clock()
    limiter = RateLimiter(Limits(requests_per_minute=3), clock=clock)
    for _ in range(3):
        assert limiter.acquire("a") is None
        limiter.release("a")
    clock.now += 20
    rejection = limiter.acquire("a")
    assert rejection is not None
    assert rejection.reason == REQUESTS_PER_MINUTE
    assert rejection.limit == 3
    assert rejection.retry_after == 41  # the first slot [1000, 1001) leaves at 1061
    assert limiter.acquire("b") is None  # keys are independent
    clock.now = 1061.0
    assert limiter.acquire("a") is None


def test_a_rejected_request_uses_no_budget() -> None:
    clock = Clock()
    limiter = RateLimiter(Limits(requests_per_minute=2, concurrent_per_key=1), clock=clock)
    assert limiter.acquire("a") is None
    for _ in range(5):
        rejected = limiter.acquire("a")
        assert rejected is not None and rejected.reason == KEY_CONCURRENCY
    limiter.release("a")
    assert limiter.acquire("a") is None  # the second of two, not refused by the five above
    limiter.release("a")
    third = limiter.acquire("a")
    assert third is not None and third.reason == REQUESTS_PER_MINUTE


def test_concurrency_per_key_and_in_all() -> None:
    limiter = RateLimiter(Limits(concurrent_per_key=2, concurrent=3), clock=Clock())
    assert limiter.acquire("a") is None
    assert limiter.acquire("a") is None
    over_key = limiter.acquire("a")
    assert over_key is not None and over_key.reason == KEY_CONCURRENCY
    assert over_key.retry_after == 1 and over_key.error_type == "rate_limit_exceeded"
    assert limiter.acquire("b") is None
    over_all = limiter.acquire("c")
    assert over_all is not None and over_all.reason == GLOBAL_CONCURRENCY
    assert over_all.error_type == "provider_overloaded"
    assert (limiter.active, limiter.active_for("a"), limiter.active_for("b")) == (3, 2, 1)
    limiter.release("a")
    assert limiter.acquire("c") is None
    assert limiter.active_for("c") == 1


def test_tokens_per_minute_are_charged_from_generation_records() -> None:
    clock = Clock()
    limiter = RateLimiter(Limits(tokens_per_minute=100), clock=clock)
    assert limiter.acquire("a") is None  # nothing used yet
    limiter.release("a")
    limiter.observe(
        GenerationRecord(**record_kwargs(key_id="a", prompt_tokens=60, completion_tokens=39))
    )
    assert limiter.acquire("a") is None  # 99 < 100: a budget is left
    limiter.release("a")
    clock.now += 5
    limiter.observe(
        GenerationRecord(**record_kwargs(key_id="a", prompt_tokens=1, completion_tokens=0))
    )
    rejection = limiter.acquire("a")
    assert rejection is not None and rejection.reason == TOKENS_PER_MINUTE
    assert rejection.retry_after == 56  # until the 99 tokens of [1000, 1001) leave at 1061
    assert limiter.acquire(None) is None  # other keys (and the anonymous bucket) are not charged
    clock.now = 1061.0
    assert limiter.acquire("a") is None


def test_an_open_proxy_shares_one_bucket() -> None:
    limiter = RateLimiter(Limits(requests_per_minute=2), clock=Clock())
    assert limiter.acquire(None) is None
    assert limiter.acquire(None) is None
    assert limiter.acquire(None) is not None


# --- the middleware: slots come back however a request ends -----------------------------------


def http_scope(method: str = "POST", key_id: str | None = "a") -> Scope:
    return {
        "type": "http",
        "method": method,
        "path": "/v1/chat/completions",
        "headers": [],
        "state": {"key_id": key_id},
    }


async def run_middleware(middleware: LimitsMiddleware, scope: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    return sent


async def test_middleware_releases_on_an_exception_and_on_cancellation() -> None:
    limiter = RateLimiter(Limits(concurrent=1))
    started = asyncio.Event()

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    async def hanging(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # a request is admitted once its body is read
        started.set()
        await asyncio.sleep(30)

    with pytest.raises(RuntimeError):
        await run_middleware(LimitsMiddleware(failing, limiter=limiter), http_scope())
    assert limiter.active == 0

    task = asyncio.create_task(
        run_middleware(LimitsMiddleware(hanging, limiter=limiter), http_scope())
    )
    await started.wait()
    assert limiter.active == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limiter.active == 0


async def test_middleware_answers_429_with_retry_after_and_counts_the_reason() -> None:
    limiter = RateLimiter(Limits(requests_per_minute=1))
    reasons: list[str] = []

    async def ok(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # a request is admitted once its body is read
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = LimitsMiddleware(ok, limiter=limiter, on_reject=reasons.append)
    first = await run_middleware(middleware, http_scope())
    assert first[0]["status"] == 200
    second = await run_middleware(middleware, http_scope())
    assert second[0]["status"] == 429
    headers = dict(second[0]["headers"])
    assert 1 <= int(headers[b"retry-after"]) <= 61
    assert b'"reason":"requests_per_minute"' in second[1]["body"]
    assert reasons == [REQUESTS_PER_MINUTE]
    reads = await run_middleware(middleware, http_scope("GET"))  # reads are never limited
    assert reads[0]["status"] == 200


# --- over real sockets ------------------------------------------------------------------------


async def test_200_concurrent_requests_with_a_limit_of_50(fake: FakeUpstream) -> None:
    async with serve(fake, GuardConfig(rate_limit_rpm=50)) as served:
        responses = await asyncio.gather(
            *(raw_post(served.url, "/v1/chat/completions", CHAT) for _ in range(200))
        )
        statuses = [response.status for response in responses]
        assert statuses.count(200) == 50
        assert statuses.count(429) == 150
        for response in responses:
            if response.status == 429:
                assert response.headers["content-type"] == "application/json"
                assert response.json()["error"] == {
                    "message": "rate limit exceeded: 50 requests per minute per key",
                    "type": "rate_limit_error",
                    "code": 429,
                    "metadata": {
                        "error_type": "rate_limit_exceeded",
                        "reason": "requests_per_minute",
                        "limit": 50,
                    },
                }
                assert 1 <= int(response.headers["retry-after"]) <= 61
        assert served.guards.limiter.active == 0
        async with client(served.url) as http:
            assert (await http.get("/health")).status_code == 200  # reads stay free
            assert (await http.get("/v1/models")).status_code == 200
    assert len([seen for seen in fake.requests if seen["path"] == "/v1/chat/completions"]) == 50


async def test_the_concurrency_cap_answers_429_at_once_while_the_engine_is_busy(
    fake: FakeUpstream,
) -> None:
    fake.gate = asyncio.Event()
    guards = GuardConfig(max_concurrent=5)
    limits = httpx.Limits(max_connections=50)
    async with serve(fake, guards) as served, client(served.url, limits=limits) as http:
        started = time.monotonic()
        tasks = [
            asyncio.create_task(http.post("/v1/chat/completions", json=CHAT)) for _ in range(20)
        ]
        await wait_until(lambda: sum(task.done() for task in tasks) == 15)
        turned_away = time.monotonic() - started
        await wait_until(lambda: len(fake.requests) == 5)
        assert served.guards.limiter.active == 5
        for task in tasks:
            if task.done():
                response = task.result()
                error = assert_error(response, 429, "provider_overloaded")
                assert error["metadata"]["reason"] == "concurrency"
                assert response.headers["retry-after"] == "1"
        fake.gate.set()
        responses = await asyncio.gather(*tasks)
        assert [r.status_code for r in responses].count(200) == 5
        assert served.guards.limiter.active == 0
        assert (await http.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert turned_away < 2.0  # not queued behind the held requests


async def test_concurrency_per_key_leaves_other_keys_alone(fake: FakeUpstream) -> None:
    fake.gate = asyncio.Event()
    guards = GuardConfig(api_keys=("key-one-1234", "key-two-5678"), max_concurrent_per_key=2)
    async with (
        serve(fake, guards) as served,
        client(served.url, "key-one-1234") as one,
        client(served.url, "key-two-5678") as two,
    ):
        held = [asyncio.create_task(one.post("/v1/chat/completions", json=CHAT)) for _ in range(2)]
        await wait_until(lambda: len(fake.requests) == 2)
        third = await one.post("/v1/chat/completions", json=CHAT)
        error = assert_error(third, 429, "rate_limit_exceeded")
        assert error["metadata"]["reason"] == "key_concurrency"
        other = asyncio.create_task(two.post("/v1/chat/completions", json=CHAT))
        await wait_until(lambda: len(fake.requests) == 3)
        fake.gate.set()
        for response in await asyncio.gather(*held, other):
            assert response.status_code == 200
        assert served.guards.limiter.active == 0


async def test_tokens_per_minute_per_key_from_finished_generations(fake: FakeUpstream) -> None:
    guards = GuardConfig(api_keys=("key-one-1234", "key-two-5678"), rate_limit_tpm=100)
    async with (
        serve(fake, guards, setup=add_generate_route) as served,
        client(served.url, "key-one-1234") as one,
        client(served.url, "key-two-5678") as two,
    ):
        used = await one.post("/test/generate", json={"prompt_tokens": 80, "completion_tokens": 20})
        assert used.status_code == 200
        over = await one.post("/v1/chat/completions", json=CHAT)
        error = assert_error(over, 429, "rate_limit_exceeded")
        assert error["metadata"]["reason"] == "tokens_per_minute"
        assert 1 <= int(over.headers["retry-after"]) <= 61
        assert (await two.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_tokens_per_minute_from_real_completions(fake: FakeUpstream) -> None:
    # The fake engine reports 5 prompt + 4 completion tokens per answer.
    guards = GuardConfig(api_keys=("key-one-1234",), rate_limit_tpm=10)
    async with serve(fake, guards) as served, client(served.url, "key-one-1234") as http:
        assert (await http.post("/v1/chat/completions", json=CHAT)).status_code == 200
        assert (await http.post("/v1/chat/completions", json=CHAT)).status_code == 200  # 9 < 10
        over = await http.post("/v1/chat/completions", json=CHAT)
        assert assert_error(over, 429, "rate_limit_exceeded")["metadata"]["reason"] == (
            "tokens_per_minute"
        )


# --- slots come back on every path, over real sockets ------------------------------------------


async def read_all(http: httpx.AsyncClient, body: dict[str, Any]) -> int:
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        async for _ in response.aiter_raw():
            pass
        return response.status_code


async def test_slots_are_released_after_answers_and_upstream_errors(fake: FakeUpstream) -> None:
    guards = GuardConfig(max_concurrent=1, max_concurrent_per_key=1)
    async with serve(fake, guards, keepalive_interval=0.2) as served, client(served.url) as http:
        limiter = served.guards.limiter
        assert (await http.post("/v1/chat/completions", json=CHAT)).status_code == 200
        assert await read_all(http, STREAM) == 200
        assert limiter.active == 0
        fake.fail_status = 500
        assert (await http.post("/v1/chat/completions", json=CHAT)).status_code >= 500
        assert await read_all(http, STREAM) in (200, 500, 502)
        assert limiter.active == 0
        fake.fail_status, fake.break_after = None, 1
        with contextlib.suppress(httpx.HTTPError):  # an error chunk, or a broken stream
            await read_all(http, STREAM)
        await wait_until(lambda: limiter.active == 0)
        fake.break_after = None
        assert (await http.post("/v1/chat/completions", json=CHAT)).status_code == 200
        assert limiter.active == 0 and limiter.active_for(None) == 0


async def test_slots_are_released_when_the_engine_is_down_or_not_ready(fake: FakeUpstream) -> None:
    guards = GuardConfig(max_concurrent=1)
    down = f"http://127.0.0.1:{free_port()}"
    async with serve(fake, guards, upstream_url=down) as served, client(served.url) as http:
        for _ in range(3):
            assert (await http.post("/v1/chat/completions", json=CHAT)).status_code == 502
        served.state.status = "starting"
        for _ in range(3):
            assert (await http.post("/v1/chat/completions", json=CHAT)).status_code == 503
        assert served.guards.limiter.active == 0


async def test_slots_are_released_when_the_client_goes_away(fake: FakeUpstream) -> None:
    fake.chunk_delay, fake.chunks = 0.1, 100
    guards = GuardConfig(max_concurrent=1)
    async with serve(fake, guards) as served:
        limiter = served.guards.limiter
        async with (
            client(served.url) as http,
            http.stream("POST", "/v1/chat/completions", json=STREAM) as response,
        ):
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    break
            assert limiter.active == 1
        await wait_until(lambda: limiter.active == 0)
        fake.chunk_delay, fake.chunks, fake.header_delay = 0.0, 4, 10.0
        async with client(served.url, timeout=httpx.Timeout(10, read=0.3)) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.post("/v1/chat/completions", json=CHAT)
        await wait_until(lambda: limiter.active == 0)
        fake.header_delay = 0.0
        async with client(served.url) as http:
            assert (await http.post("/v1/chat/completions", json=CHAT)).status_code == 200
