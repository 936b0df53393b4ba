"""Issue 11, item 4: tokens per minute are reserved at admission and settled with the engine's
count, a client that leaves is charged what the engine did, and cost and the token counters count
the same tokens. On the simulated engine, over real sockets."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from infer_cli.proxy.guards.limits import TOKENS_PER_MINUTE, Limits, RateLimiter, Reservation
from infer_cli.proxy.guards.middleware import GuardConfig
from tests.guard_harness import parse_metrics, raw_post, sample
from tests.helpers import wait_until
from tests.sim_harness import MODEL, PRICES, sim_proxy


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def chat(content: str, **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **fields}


# --- the limiter's reservations -----------------------------------------------------------------


def test_a_reservation_counts_at_once_and_settles_in_its_own_slot() -> None:
    clock = Clock()
    limiter = RateLimiter(Limits(tokens_per_minute=300), clock=clock)
    first = limiter.reserve("a", 200)
    assert isinstance(first, Reservation)
    second = limiter.reserve("a", 200)  # 200 < 300: admitted; the key is now over
    assert isinstance(second, Reservation)
    third = limiter.reserve("a", 1)
    assert not isinstance(third, Reservation) and third.reason == TOKENS_PER_MINUTE
    assert limiter.acquire("a") is not None  # the early check sees the reservations too
    clock.now += 30
    first.settle(20)  # the real count replaces the estimate where it was counted
    second.settle(30)
    second.settle(1000)  # once only
    assert isinstance(limiter.reserve("a", 0), Reservation)  # 50 < 300
    clock.now = 1061.0  # the slot of [1000, 1001) has left the window
    late = limiter.reserve("a", 10)
    assert isinstance(late, Reservation)
    clock.now += 61
    late.settle(500)  # the estimate has left the window: what exceeded it counts now
    rejected = limiter.reserve("a", 1)
    assert not isinstance(rejected, Reservation)
    assert limiter.reserve("b", 1) is not None  # other keys have their own budget


# --- over real sockets --------------------------------------------------------------------------


async def test_concurrent_requests_cannot_overrun_tokens_per_minute() -> None:
    # The probe: 40 concurrent requests used 4,400 tokens under rate_limit_tpm=300, as tokens
    # were counted only when a generation ended.
    guards = GuardConfig(rate_limit_tpm=300, engine_metrics=False)
    async with sim_proxy(guards, ms_per_output_token=2) as proxy:
        body = chat("Tell me a long story about the sea.", max_tokens=100)
        answers = await asyncio.gather(
            *(raw_post(proxy.url, "/v1/chat/completions", body) for _ in range(40))
        )
    served = [answer for answer in answers if answer.status == 200]
    refused = [answer for answer in answers if answer.status == 429]
    assert len(served) + len(refused) == 40
    assert served and refused
    for answer in refused:
        assert answer.json()["error"]["metadata"]["reason"] == "tokens_per_minute"
        assert 1 <= int(answer.headers["retry-after"]) <= 61
    used = sum(_dechunked(answer.body)["usage"]["total_tokens"] for answer in served)
    # At most the budget plus the last request admitted under it (its prompt and max_tokens).
    assert used <= 300 + 150, used


async def test_an_abandoned_plain_request_is_charged_its_prompt_tokens() -> None:
    # The probe: non-streamed requests whose clients left cost the engine thousands of prompt
    # tokens and were charged 0.
    guards = GuardConfig(rate_limit_tpm=100_000, engine_metrics=False)
    prompt = "Summarise the following notes. " + "The tide rises and the boats lift. " * 60
    body = chat(prompt, max_tokens=400)
    async with sim_proxy(guards, ms_per_output_token=20) as proxy, proxy.client() as http:
        request = asyncio.create_task(http.post("/v1/chat/completions", json=body))
        await asyncio.sleep(0.5)
        request.cancel()
        await wait_until(lambda: len(proxy.records) == 1, timeout=5)
        counted = await http.post("/tokenize", json={"model": MODEL, "messages": body["messages"]})
        metrics = parse_metrics((await http.get("/metrics")).text)
    record = proxy.records[0]
    assert record.cancelled and not record.streamed
    assert counted.status_code == 200
    assert record.prompt_tokens == counted.json()["count"] > 300
    assert record.cost == PRICES.cost(record.prompt_tokens, record.completion_tokens).total > 0
    # The counters count the same tokens as the cost and the budget.
    assert sample(metrics, "infer_proxy_prompt_tokens_total", model=MODEL) == record.prompt_tokens
    assert record.charged
    window = proxy.guards.limiter._state(None).tokens
    assert window.total(proxy.guards.limiter._clock()) >= record.prompt_tokens


async def test_an_abandoned_stream_is_charged_its_prompt_and_the_tokens_sent() -> None:
    guards = GuardConfig(engine_metrics=False)
    body = chat("Count to a hundred, slowly.", max_tokens=300, stream=True)
    async with sim_proxy(guards, ms_per_output_token=20) as proxy, proxy.client() as http:
        seen = 0
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                seen += '"content"' in line
                if seen >= 5:
                    break
        await wait_until(lambda: len(proxy.records) == 1, timeout=5)
        counted = await http.post("/tokenize", json={"model": MODEL, "messages": body["messages"]})
        metrics = parse_metrics((await http.get("/metrics")).text)
    record = proxy.records[0]
    assert record.cancelled and record.streamed
    assert record.prompt_tokens == counted.json()["count"]
    assert record.completion_tokens >= 4
    assert record.cost == PRICES.cost(record.prompt_tokens, record.completion_tokens).total
    completion = sample(metrics, "infer_proxy_completion_tokens_total", model=MODEL)
    assert completion == record.completion_tokens


async def test_tokenize_and_detokenize_count_against_tokens_per_minute() -> None:
    guards = GuardConfig(rate_limit_tpm=30, engine_metrics=False)
    async with sim_proxy(guards) as proxy, proxy.client() as http:
        first = await http.post("/tokenize", json={"prompt": "word " * 100})  # ~125 estimated
        assert first.status_code == 200, first.text
        ids = first.json()["tokens"]
        over = await http.post("/v1/detokenize", json={"tokens": ids})
        error = over.json()["error"]
        assert over.status_code == 429 and error["metadata"]["reason"] == "tokens_per_minute"
        also = await http.post("/v1/chat/completions", json=chat("hi", max_tokens=2))
        assert also.status_code == 429


async def test_detokenize_on_the_simulated_engine() -> None:
    async with sim_proxy() as proxy, proxy.client() as http:
        ids = (await http.post("/tokenize", json={"prompt": "Hello, sea!"})).json()["tokens"]
        text = await http.post("/api/v1/detokenize", json={"model": MODEL, "tokens": ids})
        bad = await http.post("/detokenize", json={"tokens": ["x"]})
    assert text.status_code == 200 and text.json()["prompt"] == "Hello, sea!"
    assert bad.status_code == 400 and "tokens" in bad.json()["error"]["message"]


async def test_a_completed_request_settles_with_the_engines_usage() -> None:
    guards = GuardConfig(rate_limit_tpm=10_000, engine_metrics=False)
    async with sim_proxy(guards) as proxy, proxy.client() as http:
        response = await http.post("/v1/chat/completions", json=chat("hi", max_tokens=5000))
        usage = response.json()["usage"]
        limiter = proxy.guards.limiter
        await wait_until(lambda: len(proxy.records) == 1)
        # The 5,000-token reservation is gone: only what the engine reported counts.
        assert limiter._state(None).tokens.total(limiter._clock()) == usage["total_tokens"]


def _dechunked(body: bytes) -> Any:
    """The JSON of a body sent with ``Transfer-Encoding: chunked``."""
    data = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        length = int(size, 16)
        if length == 0:
            break
        data, body = data + rest[:length], rest[length + 2 :]
    return json.loads(data)
